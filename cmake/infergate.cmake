# Shared compile settings and the helpers every module uses.

add_library(infergate_options INTERFACE)
target_compile_options(infergate_options INTERFACE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
target_compile_definitions(infergate_options INTERFACE
  BOOST_ASIO_NO_DEPRECATED SPDLOG_FMT_EXTERNAL)
# GCC 12 reports -Wrestrict false positives inside std::string at -O3 (GCC bug 105651).
target_compile_options(infergate_options INTERFACE $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
if(INFERGATE_WERROR)
  target_compile_options(infergate_options INTERFACE -Werror)
endif()
# Profile-guided builds (scripts/build --pgo): `generate` instruments the code; `use` compiles it
# again with the profiles that a training run of the generate build left next to the objects.
set(INFERGATE_PGO "OFF" CACHE STRING "Profile-guided optimisation: OFF, generate or use")
if(INFERGATE_PGO STREQUAL "generate")
  target_compile_options(infergate_options INTERFACE -fprofile-generate -fprofile-update=atomic)
  target_link_options(infergate_options INTERFACE -fprofile-generate)
elseif(INFERGATE_PGO STREQUAL "use")
  # Code that the training never ran (tests, other commands) has no profile: not an error.
  target_compile_options(infergate_options INTERFACE -fprofile-use -fprofile-correction
    -Wno-missing-profile)
elseif(NOT INFERGATE_PGO STREQUAL "OFF")
  message(FATAL_ERROR "INFERGATE_PGO must be OFF, generate or use, not '${INFERGATE_PGO}'")
endif()
if(INFERGATE_SANITIZE)
  target_compile_options(infergate_options INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(infergate_options INTERFACE -fsanitize=address,undefined)
endif()

# Fuzzing builds (scripts/fuzz): every library gets libFuzzer's coverage instrumentation; the
# fuzz targets link libFuzzer itself (tests/fuzz/CMakeLists.txt).
if(INFERGATE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "INFERGATE_FUZZ needs clang (libFuzzer): configure with CMAKE_CXX_COMPILER=clang++")
  endif()
  # UBSan's function-type check makes clang 14 emit coroutine code it cannot assemble ("Cannot
  # represent a difference across sections"); the other checks stay.
  target_compile_options(infergate_options INTERFACE -fsanitize=fuzzer-no-link
    $<$<BOOL:${INFERGATE_SANITIZE}>:-fno-sanitize=function>)
endif()

# infergate_module(NAME SOURCES ... DEPS ...): one static library per src/<module>.
# Public headers are included as "<module>/<file>.h" from src/.
function(infergate_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(infergate_${name} STATIC ${ARG_SOURCES})
  target_include_directories(infergate_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(infergate_${name} PUBLIC infergate_options ${ARG_DEPS})
endfunction()

# infergate_test(NAME SOURCES ... DEPS ...): one GoogleTest binary, registered with CTest.
function(infergate_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE infergate_options GTest::gtest GTest::gtest_main GTest::gmock ${ARG_DEPS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
endfunction()
