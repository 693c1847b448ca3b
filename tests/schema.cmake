pw_add_unit(test_cfg SOURCES unit/test_cfg.c LIBS pw_schema)
pw_add_unit(test_cfg_units SOURCES unit/test_cfg_units.c LIBS pw_schema)
pw_add_unit(test_cfg_patch SOURCES unit/test_cfg_patch.c LIBS pw_schema)
pw_add_integration(test_schema_cli integration/test_schema_cli.py)
