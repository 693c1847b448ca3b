# pathway-mock-upstream: JSON-RPC endpoint simulator with fault injection (tests, benchmarks).
add_executable(pathway-mock-upstream ${CMAKE_CURRENT_SOURCE_DIR}/mock_upstream.c ${CMAKE_CURRENT_SOURCE_DIR}/mock_chain.c
                                     ${CMAKE_CURRENT_SOURCE_DIR}/mock_control.c ${CMAKE_CURRENT_SOURCE_DIR}/mock_ws.c)
target_link_libraries(pathway-mock-upstream PRIVATE PkgConfig::H2O PkgConfig::OPENSSL PkgConfig::JANSSON wslay Threads::Threads pw_version)
