# dataplane: request inspection (routing, JSON-RPC id, error bodies).
pw_add_fuzz(fuzz_dp_rpc ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_rpc.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/dataplane LIBS pw_dataplane)
pw_add_fuzz(fuzz_dp_classify ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_classify.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/classify LIBS pw_dataplane)
# dataplane: the upstream's HTTP/1.1 response (head, framing, chunked body), cut anywhere.
pw_add_fuzz(fuzz_dp_h1parse ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_h1parse.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/h1parse LIBS pw_dataplane)
# dataplane: what the response cache reads of requests, batches and answers (issue 12), against jansson.
pw_add_fuzz(fuzz_dp_cachekey ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_cachekey.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/cachekey LIBS pw_dataplane)
# dataplane: an upstream's HTTP/2 bytes through a client session and the response-head code of dp_h2 (issue 17).
pw_add_fuzz(fuzz_dp_h2 ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_h2.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/h2 LIBS pw_dataplane)
# dataplane: an upstream's answer to the WebSocket upgrade (issue 17): its 101 and Sec-WebSocket-Accept.
pw_add_fuzz(fuzz_dp_ws_handshake ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dp_ws_handshake.c ${CMAKE_CURRENT_SOURCE_DIR}/seeds/ws_handshake LIBS pw_dataplane)
