pw_add_unit(test_pw_log SOURCES unit/test_pw_log.c LIBS pw_common)
