pw_add_fuzz(fuzz_ctl_set ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_ctl_set.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/tools LIBS pw_pathwayctl)
