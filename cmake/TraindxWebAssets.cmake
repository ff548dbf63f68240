# The report page's web assets (web/): the chart libraries installed from npm and the page template, embedded
# into traindx_report as byte arrays by cmake/TraindxEmbedAssets.cmake, so report.html opens without a network.
# Regenerated at build time whenever an asset changes.
set(TRAINDX_WEB_DIR ${PROJECT_SOURCE_DIR}/web)

# symbol=path, in the order the page loads them. Keep the npm packages in step with web/package.json.
set(traindx_web_npm_packages chart.js chartjs-chart-matrix)
set(traindx_web_assets
  "chart_js=${TRAINDX_WEB_DIR}/node_modules/chart.js/dist/chart.umd.js"
  "chart_matrix_js=${TRAINDX_WEB_DIR}/node_modules/chartjs-chart-matrix/dist/chartjs-chart-matrix.min.js"
  "page_html=${TRAINDX_WEB_DIR}/src/report.html"
  "page_css=${TRAINDX_WEB_DIR}/src/report.css"
  "page_js=${TRAINDX_WEB_DIR}/src/report.js")

# Nothing is downloaded at configure time: the npm install is a separate, explicit step.
set(traindx_web_fix "run `npm ci --prefix web` in ${PROJECT_SOURCE_DIR} (scripts/build.sh does this)")
foreach(package ${traindx_web_npm_packages})
  set(manifest ${TRAINDX_WEB_DIR}/node_modules/${package}/package.json)
  if(NOT EXISTS ${manifest})
    message(FATAL_ERROR "The report's web dependencies are not installed (${manifest} is missing): ${traindx_web_fix}")
  endif()
  # An installed version that differs from the lock file means node_modules predates a package-lock change.
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.19)
    file(READ ${manifest} manifest_json)
    file(READ ${TRAINDX_WEB_DIR}/package-lock.json lock_json)
    string(JSON installed GET "${manifest_json}" version)
    string(JSON locked ERROR_VARIABLE lock_error GET "${lock_json}" packages "node_modules/${package}" version)
    if(NOT lock_error AND NOT installed STREQUAL locked)
      message(FATAL_ERROR "web/node_modules has ${package} ${installed} but web/package-lock.json locks ${locked}: "
                          "${traindx_web_fix}")
    endif()
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${manifest} ${TRAINDX_WEB_DIR}/package-lock.json)
endforeach()

set(traindx_web_gen_dir ${PROJECT_BINARY_DIR}/generated_private/report)
set(traindx_web_files "")
foreach(asset ${traindx_web_assets})
  string(REGEX REPLACE "^[a-z_]+=" "" file ${asset})
  list(APPEND traindx_web_files ${file})
endforeach()
string(REPLACE ";" "|" traindx_web_assets_arg "${traindx_web_assets}")
add_custom_command(
  OUTPUT ${traindx_web_gen_dir}/web_assets.cpp ${traindx_web_gen_dir}/web_assets.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${traindx_web_gen_dir}
  COMMAND ${CMAKE_COMMAND} "-DASSETS=${traindx_web_assets_arg}"
          -DOUTPUT_CPP=${traindx_web_gen_dir}/web_assets.cpp -DOUTPUT_H=${traindx_web_gen_dir}/web_assets.h
          -P ${PROJECT_SOURCE_DIR}/cmake/TraindxEmbedAssets.cmake
  DEPENDS ${traindx_web_files} ${PROJECT_SOURCE_DIR}/cmake/TraindxEmbedAssets.cmake
  COMMENT "Embedding the report's web assets"
  VERBATIM)
target_sources(traindx_report PRIVATE ${traindx_web_gen_dir}/web_assets.cpp ${traindx_web_gen_dir}/web_assets.h)
# Private: the assets are an implementation detail of render_html, not part of the installed headers.
target_include_directories(traindx_report PRIVATE ${traindx_web_gen_dir})
