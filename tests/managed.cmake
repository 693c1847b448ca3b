# Managed dataplanes (control plane <-> dataplane): issue 5.
pw_add_unit(test_dp_cpclient SOURCES unit/test_dp_cpclient.c ${PROJECT_SOURCE_DIR}/dataplane/dp_cpclient.c
  LIBS pw_schema pw_common PkgConfig::CURL)
target_include_directories(test_dp_cpclient PRIVATE ${PROJECT_SOURCE_DIR}/dataplane)
