//! `cbuild config`: the resolved Compose model.

use crate::cli::args::{ConfigArgs, ConfigFormat, GlobalArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::ui::Printer;

pub fn run(global: &GlobalArgs, args: &ConfigArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let lines: Option<Vec<String>> = if args.services {
        Some(project.services.keys().cloned().collect())
    } else if args.images {
        Some(
            project
                .services
                .values()
                .map(|s| s.image_name(&project.name))
                .collect(),
        )
    } else if args.list_profiles {
        let mut all: Vec<String> = project
            .services
            .values()
            .flat_map(|s| s.profiles.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        Some(all)
    } else {
        None
    };
    if let Some(lines) = lines {
        crate::ui::print_lines(printer, &lines);
        return ExitStatus::Success;
    }
    // compose prints a slightly different model per format (see
    // `render::project_yaml`).
    let out = match args.format {
        ConfigFormat::Json => {
            let model = crate::compose::render::project_json(&project);
            serde_json::to_string_pretty(&model).map_err(anyhow::Error::from)
        }
        ConfigFormat::Yaml => {
            let model = crate::compose::render::project_yaml(&project);
            crate::compose::yaml::to_string(&model).map_err(anyhow::Error::from)
        }
    };
    match out {
        Ok(s) => {
            printer.data_line(&s);
            ExitStatus::Success
        }
        Err(e) => {
            report_error(printer, &e, None);
            ExitStatus::Error
        }
    }
}
