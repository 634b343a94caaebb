//! The miette handler: colors per `--color` and `NO_COLOR`, no hyperlinks, terminal width.

use crate::args::ColorChoice;

/// Whether to use colors on a stream that is (or is not) a terminal.
pub(crate) fn use_color(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        }
    }
}

/// Install the diagnostic renderer for this process.
pub(crate) fn install(choice: ColorChoice) {
    use std::io::IsTerminal;
    let color = use_color(choice, std::io::stderr().is_terminal());
    console::set_colors_enabled(use_color(choice, std::io::stdout().is_terminal()));
    console::set_colors_enabled_stderr(color);
    // Only fails when a hook is already installed, which cannot happen this early.
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(true)
                .terminal_links(false)
                .context_lines(2)
                .build(),
        )
    }));
}
