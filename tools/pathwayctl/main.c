/*
 * pathwayctl: the control plane's REST API for operators (docs/pathwayctl.md).
 *
 *   pathwayctl status | versions | show [N] | diff A [B] | apply FILE | set KEY=VALUE... |
 *              rollback N|TAG|previous | tag NAME [N] | tag delete NAME | validate FILE |
 *              dataplanes [forget ID] | events | rollout status|list|pause|resume|promote|abort [ID]
 */
#include "ctl.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int want_color(ctl_color_t mode)
{
    if (mode != CTL_COLOR_AUTO)
        return mode == CTL_COLOR_ALWAYS;
    const char *no = getenv("NO_COLOR"), *term = getenv("TERM");
    if (no != NULL && no[0] != '\0')
        return 0;
    if (term == NULL || strcmp(term, "dumb") == 0)
        return 0;
    return isatty(STDOUT_FILENO);
}

int main(int argc, char **argv)
{
    ctl_args_t args;
    char err[512];
    if (argc < 2) {
        ctl_print_help(stderr, NULL);
        return CTL_EXIT_USAGE;
    }
    if (ctl_parse_args(argc, argv, &args, err, sizeof(err)) != 0) {
        fprintf(stderr, "pathwayctl: %s\n", err);
        if (args.cmd != NULL)
            fprintf(stderr, "usage: pathwayctl %s %s (pathwayctl %s --help)\n", args.cmd->name, args.cmd->synopsis, args.cmd->name);
        else
            fprintf(stderr, "pathwayctl --help lists the commands\n");
        return CTL_EXIT_USAGE;
    }
    if (args.help) {
        ctl_print_help(stdout, args.cmd);
        return CTL_EXIT_OK;
    }
    if (args.version) { /* `pathwayctl --version`, also after a command: prints, runs nothing */
        printf("pathwayctl %s\n", ctl_version());
        return CTL_EXIT_OK;
    }

    ctl_t ctl = {.out = stdout, .err = stderr};
    ctl_env_t env = {.url = getenv("PATHWAY_URL"),
                     .token = getenv("PATHWAY_TOKEN"),
                     .xdg_config_home = getenv("XDG_CONFIG_HOME"),
                     .home = getenv("HOME")};
    if (ctl_conn_resolve(&args, &env, &ctl.conn, err, sizeof(err)) != 0) {
        fprintf(stderr, "pathwayctl: %s\n", err);
        return CTL_EXIT_USAGE;
    }
    ctl.color = want_color(args.color);
    if (ctl_http_init(&ctl) != 0) {
        fprintf(stderr, "pathwayctl: cannot initialise libcurl\n");
        ctl_conn_dispose(&ctl.conn);
        return CTL_EXIT_UNREACHABLE;
    }
    int rc = args.cmd->run(&ctl, &args);
    ctl_http_dispose(&ctl);
    ctl_conn_dispose(&ctl.conn);
    if (fflush(stdout) != 0 && rc == CTL_EXIT_OK)
        rc = CTL_EXIT_USAGE; /* output lost (a closed pipe, a full disk) is not success */
    return rc;
}
