# Control plane tests (issue 4): cmocka units of the store, the body parsers, the config file and
# the route table against schema/openapi.yaml; integration tests that drive pathway-control.
pw_add_unit(test_cp_store SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_store.c LIBS pw_controlplane)
pw_add_unit(test_cp_body SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_body.c LIBS pw_controlplane)
pw_add_unit(test_cp_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_config.c LIBS pw_controlplane)
pw_add_unit(test_cp_routes SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cp_routes.c LIBS pw_controlplane)
pw_add_integration(test_controlplane integration/test_controlplane.py)
pw_add_integration(test_controlplane_longpoll integration/test_controlplane_longpoll.py)
pw_add_integration(test_controlplane_durability integration/test_controlplane_durability.py)
pw_add_integration(test_controlplane_limits integration/test_controlplane_limits.py)
pw_add_integration(test_openapi_lint integration/test_openapi_lint.py)
set_tests_properties(test_openapi_lint PROPERTIES SKIP_RETURN_CODE 77)
pw_add_integration(test_controlplane_fleet integration/test_controlplane_fleet.py)
pw_add_integration(test_controlplane_drift integration/test_controlplane_drift.py)
