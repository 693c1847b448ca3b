# pathwayctl and the load test (issue 6).
pw_add_unit(test_pathwayctl SOURCES unit/test_pathwayctl.c LIBS pw_pathwayctl)
pw_add_integration(test_pathwayctl_cli integration/test_pathwayctl_cli.py)
# The load test with --local (mock upstreams + a dataplane it starts itself) for 5 s, against the
# Makefile's default thresholds. Exit 77 = skipped: only when the `pathway` binary is not built.
pw_add_integration(test_load_test integration/test_load_test.py)
set_tests_properties(test_load_test PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
# pathwayctl's requests against a scripted control plane (DELETE calls, drift, paging).
pw_add_integration(test_pathwayctl_requests integration/test_pathwayctl_requests.py)
# pathwayctl against the control plane's tag delete, dataplane forget and drift.
pw_add_integration(test_pathwayctl_cp_api integration/test_pathwayctl_cp_api.py)
# pathway-mock-upstream's chain head and control listener (issue 11): what the health tests rely on.
pw_add_integration(test_mock_upstream integration/test_mock_upstream.py)
# pathwayctl and safe rollouts (issue 14): the rollout flags, `rollout status --watch` and the
# rollout controls, against a scripted control plane.
pw_add_integration(test_pathwayctl_rollout integration/test_pathwayctl_rollout.py)
