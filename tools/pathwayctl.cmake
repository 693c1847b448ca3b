# pathwayctl: the operator's CLI over the control plane's REST API (docs/pathwayctl.md).
# Everything but main.c is a library, so tests/unit/test_pathwayctl*.c drive the pure pieces.
add_library(pw_pathwayctl STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_args.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_conf.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_set.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_http.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_cmds.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_versions.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_fleet.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_wait.c
  ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/ctl_rollout.c
)
target_include_directories(pw_pathwayctl PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl)
target_link_libraries(pw_pathwayctl PUBLIC pw_schema PkgConfig::CURL PkgConfig::JANSSON)
# PW_VERSION for --version: common/'s pw_version (its generated pw_version.h)
target_link_libraries(pw_pathwayctl PRIVATE pw_version)

add_executable(pathwayctl ${CMAKE_CURRENT_SOURCE_DIR}/pathwayctl/main.c)
target_link_libraries(pathwayctl PRIVATE pw_pathwayctl)
