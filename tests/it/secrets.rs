//! Build secrets from the Compose file reach `RUN --mount=type=secret`
//! and never enter the image.

use crate::common::*;

#[test]
fn secrets_from_file_and_environment_reach_the_build_only() {
    let p = Project::new("secrets");
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build:\n      context: .\n      secrets:\n        - token\n        - source: api_key\n          target: key\nsecrets:\n  token:\n    file: ./token.txt\n  api_key:\n    environment: CBUILD_TEST_API_KEY\n",
    )
    .file("token.txt", "file-s3cr3t-4242")
    .file(
        "Dockerfile",
        "FROM cbuild-base\n\
         RUN --mount=type=secret,id=token --mount=type=secret,id=key \\\n  \
         sha256sum /run/secrets/token /run/secrets/key | cut -c1-64 > /verified\n",
    );
    let out = p.cbuild_env(&["build"], &[("CBUILD_TEST_API_KEY", "env-s3cr3t-1717")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digests = format!(
        "{}\n{}\n",
        sha256_hex(b"file-s3cr3t-4242"),
        sha256_hex(b"env-s3cr3t-1717")
    );
    assert_eq!(run_in(&p.image("app"), "cat /verified"), digests);
    // Not in any layer: export the filesystem and search it.
    let id = docker_ok(&["create", &p.image("app"), "true"])
        .trim()
        .to_string();
    let export = docker(&["export", &id]);
    let _ = docker(&["rm", "-f", &id]);
    let hay = export.stdout;
    for needle in ["file-s3cr3t-4242", "env-s3cr3t-1717"] {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} leaked into the image"
        );
    }
    let history = docker_ok(&["history", "--no-trunc", &p.image("app")]);
    assert!(!history.contains("s3cr3t"), "{history}");

    // A missing variable is a clear error.
    let out = p.cbuild_env(&["build"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("build secret `api_key`") && err.contains("CBUILD_TEST_API_KEY"),
        "{err}"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, data).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(f.path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn ssh_agent_sockets_are_forwarded() {
    use std::os::unix::net::UnixListener;
    let p = Project::new("ssh");
    let sock = p.cache.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // A stand-in agent: accepts connections (the daemon checks the agent
    // is reachable) and closes them.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    p.file("compose.yaml", "services:\n  app:\n    build:\n      context: .\n      ssh:\n        - default\n")
        .file(
            "Dockerfile",
            "FROM cbuild-base\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo forwarded > /ssh\n",
        );
    let sock_s = sock.to_str().unwrap();
    let out = p.cbuild_env(&["build"], &[("SSH_AUTH_SOCK", sock_s)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&p.image("app"), "cat /ssh"), "forwarded\n");

    // --ssh on the command line, with an id.
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nRUN --mount=type=ssh,id=deploy test -S \"$SSH_AUTH_SOCK\" && echo deploy > /ssh\n");
    let out = p.cbuild(&["build", "--ssh", &format!("deploy={sock_s}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&p.image("app"), "cat /ssh"), "deploy\n");

    // Not forwarded: the build fails and says so.
    let out = p.cbuild(&["build", "--no-cache"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("deploy"), "{}", stderr(&out));
}
