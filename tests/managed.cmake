# Managed dataplanes (control plane <-> dataplane): issue 5.
pw_add_unit(test_dp_cpclient SOURCES unit/test_dp_cpclient.c LIBS pw_dataplane)
pw_add_integration(test_managed integration/test_managed.py)
set_tests_properties(test_managed PROPERTIES TIMEOUT 600)
# Safe rollouts' evidence from the dataplane (issue 14): labels and traffic figures in heartbeats.
pw_add_integration(test_managed_evidence integration/test_managed_evidence.py)
