pw_add_fuzz(fuzz_cfg ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_cfg.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/cfg LIBS pw_schema)
