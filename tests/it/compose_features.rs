//! `cbuild build` on Compose files that use extends, include, profiles and
//! several `-f` files, as `docker compose` resolves them.

use crate::common::*;

#[test]
fn extends_include_profiles_and_several_files() {
    let p = Project::new("features");
    p.file(
        "compose.yaml",
        "include:\n  - lib/compose.yaml\nservices:\n  api:\n    extends:\n      file: common.yaml\n      service: base\n    build:\n      args:\n        ROLE: api\n  debug:\n    profiles: [debug]\n    build: debug\n",
    )
    .file(
        "common.yaml",
        "services:\n  base:\n    build:\n      context: api\n      args:\n        ROLE: base\n        LEVEL: common\n",
    )
    .file("api/Dockerfile", "FROM cbuild-base\nARG ROLE\nARG LEVEL\nRUN echo \"$ROLE $LEVEL\" > /role\n")
    .file("lib/compose.yaml", "services:\n  lib:\n    build: .\n")
    .file("lib/Dockerfile", "FROM cbuild-base\nCOPY marker /marker\n")
    .file("lib/marker", "from the included file\n")
    .file("debug/Dockerfile", "FROM cbuild-base\nRUN echo debug > /debug\n")
    .file("override.yaml", "services:\n  api:\n    build:\n      args:\n        LEVEL: override\n");

    // extends + include; the profiled service is not built.
    p.build_ok(&["build"]);
    assert_eq!(run_in(&p.image("api"), "cat /role"), "api common\n");
    assert_eq!(
        run_in(&p.image("lib"), "cat /marker"),
        "from the included file\n"
    );
    assert!(!docker(&["image", "inspect", &p.image("debug")])
        .status
        .success());

    // A second -f file overrides a build arg.
    p.build_ok(&["-f", "compose.yaml", "-f", "override.yaml", "build", "api"]);
    assert_eq!(run_in(&p.image("api"), "cat /role"), "api override\n");

    // --profile enables the profiled service; naming it does too.
    p.build_ok(&["--profile", "debug", "build"]);
    assert_eq!(run_in(&p.image("debug"), "cat /debug"), "debug\n");
}
