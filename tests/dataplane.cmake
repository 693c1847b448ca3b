# dataplane (issue 3): unit tests of its modules (test_dp_server runs a real server on threads),
# and integration tests that run pathway with pathway-mock-upstream on 127.0.0.1.
foreach(t test_dp_rpc test_dp_errors test_dp_h1parse test_dp_balancer test_dp_health test_dp_limiter test_dp_bufpool test_dp_gen test_dp_server)
  pw_add_unit(${t} SOURCES unit/${t}.c LIBS pw_dataplane)
endforeach()
# failover parts (issue 10): upstream answers classified, the retry budget, the latency estimate
pw_add_unit(test_dp_classify SOURCES unit/test_dp_classify.c LIBS pw_dataplane)
pw_add_unit(test_dp_budget SOURCES unit/test_dp_budget.c LIBS pw_dataplane)
pw_add_unit(test_dp_latency SOURCES unit/test_dp_latency.c LIBS pw_dataplane m)
# adaptive concurrency (issue 13): the limit on synthetic sample streams
pw_add_unit(test_dp_adaptive SOURCES unit/test_dp_adaptive.c LIBS pw_dataplane m)
# the response cache (issue 12): the method table, requests and answers as the cache reads them
pw_add_unit(test_dp_cachekey SOURCES unit/test_dp_cachekey.c LIBS pw_dataplane)
foreach(t test_dataplane test_dataplane_limits test_dataplane_reload test_dataplane_stream test_dataplane_faults
          test_dataplane_pool_identity test_dataplane_metrics test_dataplane_admin
          test_dataplane_secrets)
  pw_add_integration(${t} integration/${t}.py)
endforeach()
pw_add_integration(test_dataplane_strict integration/test_dataplane_strict.py)
pw_add_integration(test_dataplane_cors integration/test_dataplane_cors.py)
# adaptive concurrency (issue 13): the limit against the mock's capacity model, runtime on/off, refusals, reports
pw_add_integration(test_dataplane_adaptive integration/test_dataplane_adaptive.py)
set_tests_properties(test_dataplane_adaptive PROPERTIES RUN_SERIAL TRUE)
# endpoint health on the admin listener (issue 11): drain/undrain, /stats and /metrics
pw_add_integration(test_dataplane_health_admin integration/test_dataplane_health_admin.py)
# failover (issue 10): retries, unsafe methods, the budget, hedging, runtime knobs
pw_add_integration(test_dataplane_failover integration/test_dataplane_failover.py)
# its hedging test measures a p99 in milliseconds: not beside other tests of this run
set_tests_properties(test_dataplane_failover PROPERTIES RUN_SERIAL TRUE)
# endpoint health (issue 11): ejection and its breaker, lag, panic, drain, flap, runtime knobs; it
# measures how soon an endpoint is back (seconds): not beside other tests of this run
pw_add_integration(test_dataplane_health integration/test_dataplane_health.py)
set_tests_properties(test_dataplane_health PROPERTIES RUN_SERIAL TRUE)
# response cache (issue 12): the store's LRU and byte budget, expiry, purge, references, flights, threads
pw_add_unit(test_dp_cache SOURCES unit/test_dp_cache.c LIBS pw_dataplane)
# the response cache and coalescing (issue 12): finality, ttls, batches, 1,000 identical requests in
# flight, the memory bound, purge; its coalescing test needs 1,000 clients at once: not beside others
pw_add_integration(test_dataplane_cache integration/test_dataplane_cache.py)
set_tests_properties(test_dataplane_cache PROPERTIES RUN_SERIAL TRUE)
# upstream HTTP/2 (issue 17): h2 prior knowledge (nginx), TLS with ALPN (h2o), multiplexing, GOAWAY, 50 MiB
pw_add_integration(test_dataplane_h2 integration/test_dataplane_h2.py)
# upstream HTTP/2 (issue 17): request headers, the response head, a session reading a response, config bounds
pw_add_unit(test_dp_h2 SOURCES unit/test_dp_h2.c LIBS pw_dataplane)
# the WebSocket relay (issue 17): the upstream handshake's request and the check of its answer
pw_add_unit(test_dp_ws_handshake SOURCES unit/test_dp_ws_handshake.c LIBS pw_dataplane)
# the WebSocket relay (issue 17): subscriptions through pathway, 1,000 at once, reloads, endpoint
# removal, handshake failover, closes and limits, a slow consumer's memory; its 1,000 sockets and
# its memory figure want the machine to itself
pw_add_integration(test_dataplane_websocket integration/test_dataplane_websocket.py)
set_tests_properties(test_dataplane_websocket PROPERTIES RUN_SERIAL TRUE)
