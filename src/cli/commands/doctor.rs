//! `cbuild doctor`: which engine and builder cbuild would use, their
//! versions and platforms, and what is wrong when something is.

use crate::cli::args::GlobalArgs;
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::doctor::checkup;
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let address = match settings::address(global, &env) {
        Ok(a) => a,
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    let tls = settings::docker_tls(&env);
    let report = checkup(address, &settings::docker_host(&env), tls.as_ref()).await;
    ui::doctor::print(printer, &report);
    if report.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}
