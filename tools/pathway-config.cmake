add_executable(pathway-config ${CMAKE_CURRENT_SOURCE_DIR}/pathway_config.c)
target_link_libraries(pathway-config PRIVATE pw_schema pw_version)
