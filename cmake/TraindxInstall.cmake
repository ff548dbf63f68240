# Installs the libraries, headers and CLI, and exports traindx::traindx for find_package(traindx).
include(CMakePackageConfigHelpers)
get_property(traindx_modules GLOBAL PROPERTY TRAINDX_MODULES)
install(TARGETS traindx ${traindx_modules} EXPORT traindxTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS traindx_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/traindx DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/generated/traindx/core/build_info.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/traindx/core)
install(EXPORT traindxTargets NAMESPACE traindx:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/traindx)
configure_package_config_file(cmake/traindxConfig.cmake.in ${PROJECT_BINARY_DIR}/traindxConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/traindx)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/traindxConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/traindxConfig.cmake ${PROJECT_BINARY_DIR}/traindxConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/traindx)
