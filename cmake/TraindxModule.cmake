# traindx_add_module(NAME name [TORCH] DEPS ...): one static library per capability folder,
# sources globbed from src/<name>/ and its subfolders, public headers in include/traindx/<name>/.
function(traindx_add_module name)
  cmake_parse_arguments(ARG "TORCH" "" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  set(target traindx_${name})
  add_library(${target} STATIC ${sources})
  add_library(traindx::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON EXPORT_NAME ${name})
  target_include_directories(${target}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
           $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/generated>
           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  traindx_warnings(${target})
  if(ARG_TORCH)
    target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
    # LibTorch headers cost ~20 s per translation unit; one precompiled header per module.
    target_precompile_headers(${target} PRIVATE <torch/torch.h>)
  endif()
  set_property(GLOBAL APPEND PROPERTY TRAINDX_MODULES ${target})
endfunction()

function(traindx_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
    if(TRAINDX_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
  if(TRAINDX_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()
