pw_add_unit(test_pw_log SOURCES unit/test_pw_log.c LIBS pw_common)
pw_add_unit(test_pw_token SOURCES unit/test_pw_token.c LIBS pw_common)
pw_add_unit(test_pw_buf SOURCES unit/test_pw_buf.c LIBS pw_common)
pw_add_unit(test_pw_process SOURCES unit/test_pw_process.c LIBS pw_common)
