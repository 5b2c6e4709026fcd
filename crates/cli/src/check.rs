//! `drainpipe check [--config FILE]`: loads a configuration as a start or a
//! reload would (parse, addresses and upstream host names resolved, files
//! read, routes cross-checked) and prints what it describes, serving nothing.

use std::path::Path;

use crate::config::Config;

/// Checks the file at `path` (the built-in default when `None`) and returns
/// its summary; the error is the one line a start would fail with.
pub fn run(path: Option<&Path>) -> Result<(), String> {
    let (config, name) = match path {
        Some(p) => (Config::load(p)?, p.display().to_string()),
        None => (
            Config::parse(crate::DEFAULT_CONFIG, crate::DEFAULT_CONFIG_NAME)?,
            crate::DEFAULT_CONFIG_NAME.to_string(),
        ),
    };
    print!("{}", summary(&config, &name));
    Ok(())
}

/// A few lines: the file is valid, then its listeners, groups and routes.
fn summary(config: &Config, name: &str) -> String {
    let mut out = format!("{name}: ok\n");
    let mut listen = Vec::new();
    for l in &config.listener {
        listen.push(format!("proxy {}", l.listen));
    }
    if let Some(o) = &config.origin {
        listen.push(format!("origin {}", o.listen));
    }
    if let Some(f) = &config.forward {
        listen.push(format!("forward {}", f.listen));
    }
    if let Some(a) = &config.admin {
        listen.push(format!("admin {}", a.listen));
    }
    out.push_str(&format!("  listeners: {}\n", or_none(listen)));
    for u in &config.upstream {
        out.push_str(&format!(
            "  upstream {}: {} ({}{}{})\n",
            u.name,
            u.servers.join(", "),
            u.balance.name(),
            if u.health.is_some() {
                ", health checks"
            } else {
                ""
            },
            if u.lazy { ", resolved lazily" } else { "" }
        ));
    }
    let routes = config
        .route
        .iter()
        .map(|r| {
            format!(
                "{}{} -> {}",
                r.host.as_deref().unwrap_or(""),
                r.path,
                r.upstream
            )
        })
        .collect();
    out.push_str(&format!("  routes: {}\n", or_none(routes)));
    out
}

fn or_none(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_the_default_config() {
        let c = Config::parse(crate::DEFAULT_CONFIG, "default.toml").unwrap();
        assert_eq!(
            summary(&c, "default.toml"),
            "default.toml: ok\n  listeners: proxy 127.0.0.1:8080, origin 127.0.0.1:8081, admin 127.0.0.1:9901\n  \
upstream origin: 127.0.0.1:8081 (round_robin, health checks)\n  routes: / -> origin\n"
        );
    }
}
