//! `cbuild config`: the resolved Compose model.

use crate::cli::args::{ConfigArgs, ConfigFormat, GlobalArgs};
use crate::cli::{report_error, settings, ExitStatus};

pub fn run(global: &GlobalArgs, args: &ConfigArgs) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env) {
        Ok(p) => p,
        Err(status) => return status,
    };
    if args.services {
        for name in project.services.keys() {
            println!("{name}");
        }
        return ExitStatus::Success;
    }
    if args.images {
        for svc in project.services.values() {
            println!("{}", svc.image_name(&project.name));
        }
        return ExitStatus::Success;
    }
    if args.list_profiles {
        let mut all: Vec<&String> = project
            .services
            .values()
            .flat_map(|s| s.profiles.iter())
            .collect();
        all.sort();
        all.dedup();
        for p in all {
            println!("{p}");
        }
        return ExitStatus::Success;
    }
    let model = crate::compose::render::project_json(&project);
    let out = match args.format {
        ConfigFormat::Json => serde_json::to_string_pretty(&model).map_err(anyhow::Error::from),
        ConfigFormat::Yaml => crate::compose::yaml::to_string(&model).map_err(anyhow::Error::from),
    };
    match out {
        Ok(s) => {
            println!("{s}");
            ExitStatus::Success
        }
        Err(e) => {
            report_error(&e, None);
            ExitStatus::Error
        }
    }
}
