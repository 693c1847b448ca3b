# pw_add_fuzz(name source seeds_dir LIBS ...): libFuzzer binary under FUZZ=ON; otherwise a plain
# program run by ctest (label "fuzz") over the seed corpus.
function(pw_add_fuzz name source seeds)
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  if(FUZZ)
    add_executable(${name} ${source})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(${name} ${source} ${CMAKE_CURRENT_SOURCE_DIR}/standalone_main.c)
  endif()
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  add_test(NAME ${name}_seeds COMMAND ${name} ${seeds})
  set_tests_properties(${name}_seeds PROPERTIES LABELS fuzz TIMEOUT 120)
endfunction()
