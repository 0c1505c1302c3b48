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

/// A context given as a URL is fetched by BuildKit itself (here a tarball
/// served on loopback, since the machine has no other network).
#[test]
fn remote_tarball_context() {
    use std::io::{Read, Write};
    let mut tarball = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tarball);
        for (name, data) in [
            (
                "Dockerfile",
                "FROM cbuild-base\nCOPY hello.txt /hello.txt\n",
            ),
            ("hello.txt", "from a remote context\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_bytes()).unwrap();
        }
        b.finish().unwrap();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            let mut req = [0u8; 4096];
            let _ = conn.read(&mut req);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
                tarball.len()
            );
            let _ = conn.write_all(&tarball);
        }
    });
    let p = Project::new("remote");
    p.file(
        "compose.yaml",
        &format!("services:\n  r:\n    build: http://127.0.0.1:{port}/context.tar\n"),
    );
    p.build_ok(&["build"]);
    assert_eq!(
        run_in(&p.image("r"), "cat /hello.txt"),
        "from a remote context\n"
    );
}
