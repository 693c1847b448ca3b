# The control plane's API body and query parsers (controlplane/cp_body.c).
pw_add_fuzz(fuzz_cp_body ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_cp_body.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/controlplane LIBS pw_controlplane)
