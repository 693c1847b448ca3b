# Control plane tests (issue 4): cmocka units of the store, the body parsers, the config file and
# the route table against schema/openapi.yaml; integration tests that drive pathway-control.
pw_add_unit(test_cp_store SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_store.c LIBS pw_controlplane)
# the same suite on PostgreSQL: pg_run.py starts a throwaway cluster and sets PW_TEST_STORE_URL
add_test(NAME test_cp_store_pg COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/integration/pg_run.py
  $<TARGET_FILE:test_cp_store>)
set_tests_properties(test_cp_store_pg PROPERTIES LABELS unit TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "PW_SOURCE_DIR=${PROJECT_SOURCE_DIR};PW_BUILD_DIR=${PROJECT_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
pw_add_unit(test_cp_body SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_body.c LIBS pw_controlplane)
pw_add_unit(test_cp_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_config.c LIBS pw_controlplane)
pw_add_unit(test_cp_routes SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_routes.c LIBS pw_controlplane)
pw_add_unit(test_cp_rollout SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_rollout.c LIBS pw_controlplane)
pw_add_integration(test_controlplane integration/test_controlplane.py)
pw_add_integration(test_controlplane_longpoll integration/test_controlplane_longpoll.py)
pw_add_integration(test_controlplane_durability integration/test_controlplane_durability.py)
pw_add_integration(test_controlplane_limits integration/test_controlplane_limits.py)
pw_add_integration(test_openapi_lint integration/test_openapi_lint.py)
set_tests_properties(test_openapi_lint PROPERTIES SKIP_RETURN_CODE 77)
pw_add_integration(test_controlplane_fleet integration/test_controlplane_fleet.py)
pw_add_integration(test_controlplane_drift integration/test_controlplane_drift.py)
# endpoint health in heartbeats, GET /v1/dataplanes, /metrics and pathwayctl status (issue 11)
pw_add_integration(test_controlplane_endpoints integration/test_controlplane_endpoints.py)
pw_add_integration(test_controlplane_secrets integration/test_controlplane_secrets.py)
pw_add_integration(test_controlplane_backup integration/test_controlplane_backup.py)
pw_add_integration(test_controlplane_metrics integration/test_controlplane_metrics.py)
set_tests_properties(test_controlplane_metrics PROPERTIES SKIP_RETURN_CODE 77)
pw_add_integration(test_controlplane_rollout integration/test_controlplane_rollout.py)
set_tests_properties(test_controlplane_rollout PROPERTIES RUN_SERIAL TRUE)
pw_add_integration(test_controlplane_rollout_e2e integration/test_controlplane_rollout_e2e.py)
set_tests_properties(test_controlplane_rollout_e2e PROPERTIES RUN_SERIAL TRUE)
# two replicas on a throwaway PostgreSQL (pg_util.py); skipped (77) where it is not installed
pw_add_integration(test_controlplane_pg integration/test_controlplane_pg.py)
set_tests_properties(test_controlplane_pg PROPERTIES RUN_SERIAL TRUE SKIP_RETURN_CODE 77 TIMEOUT 400)
