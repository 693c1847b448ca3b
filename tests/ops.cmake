# Install, docs and operations (issue 9): `make install` with its systemd units, and the docs'
# links and quick start.
pw_add_integration(test_install integration/test_install.py)
set_tests_properties(test_install PROPERTIES TIMEOUT 600)
pw_add_integration(test_docs integration/test_docs.py)
