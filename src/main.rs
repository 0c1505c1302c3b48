use cbuild::buildkit::*;
use std::collections::HashMap;
#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let addr = Address::resolve(
        None,
        std::env::var("BUILDKIT_HOST").ok().as_deref(),
        std::env::var("DOCKER_HOST").ok().as_deref(),
    )
    .unwrap();
    let c = match Client::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}: {:?}", std::error::Error::source(&e));
            return;
        }
    };
    eprintln!("{:?}", c.info().await);
    let dir = std::path::PathBuf::from(&args[1]);
    let mut locals = HashMap::new();
    locals.insert("context".to_string(), LocalDir::Disk(dir.clone()));
    locals.insert("dockerfile".to_string(), LocalDir::Disk(dir.clone()));
    let spec = SessionSpec {
        shared_key: "test".into(),
        locals,
        secrets: Default::default(),
    };
    let mut opts = SolveOptions {
        frontend: DOCKERFILE_FRONTEND.into(),
        ..Default::default()
    };
    opts.frontend_attrs
        .insert("filename".into(), "Dockerfile".into());
    opts.exporters.push(ExporterSpec {
        kind: "moby".into(),
        attrs: [("name".to_string(), args[2].clone())].into(),
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StatusUpdate>();
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            for v in u.vertexes {
                eprintln!(
                    "V {} cached={} done={} err={}",
                    v.name,
                    v.cached,
                    v.completed.is_some(),
                    v.error
                );
            }
            for l in u.logs {
                eprint!("L {}", String::from_utf8_lossy(&l.data));
            }
        }
    });
    let r = c.build(&opts, &spec, tx).await;
    eprintln!("{r:?}");
}
