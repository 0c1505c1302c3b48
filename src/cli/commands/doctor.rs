//! `cbuild doctor`: which engine and builder cbuild would use, their
//! versions and platforms, and what is wrong when something is.

use crate::cli::args::GlobalArgs;
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::doctor::checkup;
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let builder = match settings::builder(global, &env) {
        Ok(b) => b,
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    let (host, tls) = settings::engine_for(&builder.address, &env);
    let report = checkup(builder.address, builder.source, &host, tls.as_ref()).await;
    ui::doctor::print(printer, &report);
    if report.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}
