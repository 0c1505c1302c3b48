//! How cbuild reads Dockerfiles decides what it may skip: sources BuildKit fetches itself
//! are never "up to date", awkwardly written but ordinary Dockerfiles are, and hostile ones
//! are refused before anything is sent.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use crate::common::*;

/// A loopback HTTP server answering every request with the current `body` (with an ETag of
/// it, as a real server would), until the test ends.
fn serve(body: Arc<Mutex<String>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = body.lock().unwrap().clone();
            let etag = format!(
                "\"{}\"",
                body.len() + body.bytes().map(usize::from).sum::<usize>()
            );
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if !req.starts_with(b"HEAD") {
                let _ = conn.write_all(body.as_bytes());
            }
        }
    });
    port
}

/// `ADD ["http://…", "/x"]` and `ADD ${URL} /x` with the URL from a build argument: BuildKit
/// fetches the URL on every build, so cbuild must never call these builds up to date.
#[test]
fn remote_add_in_json_or_through_an_arg_is_never_up_to_date() {
    let body = Arc::new(Mutex::new("v1\n".to_string()));
    let port = serve(body.clone());
    let p = Project::new("dfremote");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  json:\n    build: json\n  arg:\n    build:\n      context: arg\n      args:\n        URL: http://127.0.0.1:{port}/b\n"
        ),
    )
    .file(
        "json/Dockerfile",
        &format!("FROM cbuild-base\nADD [\"http://127.0.0.1:{port}/a\", \"/x\"]\n"),
    )
    .file(
        "arg/Dockerfile",
        "FROM cbuild-base\nARG URL=nothing\nADD \\\n  ${URL} \\\n  /x\n",
    );
    p.build_ok(&["build"]);
    for svc in ["json", "arg"] {
        assert_eq!(run_in(&p.image(svc), "cat /x"), "v1\n", "{svc}");
    }
    *body.lock().unwrap() = "v2, same Dockerfile\n".to_string();
    let out = p.cbuild(&["--progress", "json", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f = finished(&out);
    for svc in ["json", "arg"] {
        assert_eq!(f[svc]["up_to_date"], false, "{svc}: {}", f[svc]);
        assert_eq!(
            run_in(&p.image(svc), "cat /x"),
            "v2, same Dockerfile\n",
            "{svc}"
        );
    }
}

/// Ordinary Dockerfiles the old line reader got wrong (a `FROM \` continuation, the
/// `# escape=` directive, a heredoc line starting with `FROM`) are skipped when nothing
/// changed.
#[test]
fn continued_escaped_and_heredoc_dockerfiles_are_skipped() {
    let p = Project::new("dfskip");
    p.file(
        "compose.yaml",
        "services:\n  cont:\n    build: cont\n  esc:\n    build: esc\n  here:\n    build: here\n",
    )
    .file(
        "cont/Dockerfile",
        "FROM \\\n  cbuild-base AS b\nRUN echo cont > /c\n",
    )
    .file(
        "esc/Dockerfile",
        "# escape=`\nFROM `\n  cbuild-base\nRUN echo `\n  esc > /e\n",
    )
    .file(
        "here/Dockerfile",
        "FROM cbuild-base\nCOPY <<EOF /h\nFROM not-an-image\nEOF\n",
    );
    p.build_ok(&["build"]);
    assert_eq!(run_in(&p.image("esc"), "cat /e"), "esc\n");
    assert_eq!(run_in(&p.image("here"), "cat /h"), "FROM not-an-image\n");
    let out = p.cbuild(&["--progress", "json", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f = finished(&out);
    for svc in ["cont", "esc", "here"] {
        assert_eq!(f[svc]["up_to_date"], true, "{svc}: {}", f[svc]);
    }
}

/// 10,000 nested `${A:-…}` in a `FROM`, and a 2 MB line: bad input (exit 2) with the
/// Dockerfile and line named, before any build starts.
#[test]
fn hostile_dockerfiles_are_refused() {
    let p = Project::new("dfhostile");
    let n = 10_000;
    p.file(
        "compose.yaml",
        "services:\n  nested:\n    build: nested\n  long:\n    build: long\n",
    )
    .file(
        "nested/Dockerfile",
        &format!(
            "ARG A\nFROM {}cbuild-base{}\n",
            "${A:-".repeat(n),
            "}".repeat(n)
        ),
    )
    .file(
        "long/Dockerfile",
        &format!("FROM cbuild-base\nLABEL x={}\n", "x".repeat(2 << 20)),
    );
    for (svc, what) in [("nested", "nested more than"), ("long", "65535")] {
        let out = p.cbuild(&["build", svc]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{svc}: {err}");
        let path = p.path().join(svc).join("Dockerfile");
        assert!(err.contains(&path.display().to_string()), "{svc}: {err}");
        assert!(err.contains("line 2"), "{svc}: {err}");
        assert!(err.contains(what), "{svc}: {err}");
        assert!(!err.contains("panicked"), "{svc}: {err}");
    }
}

/// `${VAR#…}`, `${VAR%%…}` and `${VAR//…}` sources: `cbuild context` reads the file (it
/// used to exit 2), the build copies what BuildKit expands them to, and the next build is
/// up to date; a change under a directory only the unexpanded names point to changes
/// nothing, one under the expanded source rebuilds.
#[test]
fn pattern_substitutions_in_sources_are_predicted() {
    let p = Project::new("dfpattern");
    p.file("compose.yaml", "services:\n  pat:\n    build: pat\n")
        .file(
            "pat/Dockerfile",
            "FROM cbuild-base\nARG SRC=prefix-app.tar\nCOPY ${SRC#prefix-}/ /x\n\
             COPY ${SRC%%.*}/ /y\nCOPY ${SRC//a/o}.txt /z\n",
        )
        .file("pat/app.tar/a.txt", "a1\n")
        .file("pat/prefix-app/b.txt", "b1\n")
        .file("pat/prefix-opp.tor.txt", "z1\n")
        .file("pat/prefix-app.tar/unused.txt", "u1\n");
    let out = p.cbuild(&["context", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        listed["services"][0]["followpaths"],
        serde_json::json!(["app.tar", "prefix-app", "prefix-opp.tor.txt"]),
        "{listed}"
    );
    p.build_ok(&["build"]);
    let img = p.image("pat");
    assert_eq!(run_in(&img, "cat /x/a.txt /y/b.txt /z"), "a1\nb1\nz1\n");
    let f = finished(&p.cbuild(&["--progress", "json", "build"]));
    assert_eq!(f["pat"]["up_to_date"], true, "{}", f["pat"]);
    p.file("pat/prefix-app.tar/unused.txt", "u2\n");
    let f = finished(&p.cbuild(&["--progress", "json", "build"]));
    assert_eq!(f["pat"]["up_to_date"], true, "{}", f["pat"]);
    p.file("pat/app.tar/a.txt", "a2\n");
    let f = finished(&p.cbuild(&["--progress", "json", "build"]));
    assert_eq!(f["pat"]["up_to_date"], false, "{}", f["pat"]);
    assert_eq!(run_in(&p.image("pat"), "cat /x/a.txt"), "a2\n");
}
