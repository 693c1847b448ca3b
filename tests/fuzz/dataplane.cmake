# dataplane: request inspection (routing, JSON-RPC id, error bodies).
pw_add_fuzz(fuzz_dp_rpc ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_rpc.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/dataplane LIBS pw_dataplane)
pw_add_fuzz(fuzz_dp_classify ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_classify.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/classify LIBS pw_dataplane)
