//! A request's options (a JSON object) read as `diffinv restore` reads its flags: the same
//! parser, ranges and messages. Only options that name no file are accepted, so no request
//! ever reaches the filesystem.

use crate::cmd::restore::RestoreArgs;
use crate::common::Global;
use clap::Parser;
use serde_json::{Map, Value};

/// The options a request may set: `restore`'s flags (as `snake_case` or `kebab-case` keys)
/// that take a value, not a path, plus `seed` and `measurement`.
pub const ALLOWED: &[&str] = &[
    "task",
    "method",
    "steps",
    "zeta",
    "lambda",
    "t0",
    "ode_steps",
    "langevin_steps",
    "lr",
    "tau",
    "noisy_last_level",
    "samples",
    "box",
    "missing",
    "blur_std",
    "kernel_size",
    "intensity",
    "scale",
    "noise",
    "noise_model",
    "rate",
    "oversample",
    "hdr_alpha",
    "fit",
    "seed",
    "measurement",
];

/// `restore`'s arguments and the global seed, parsed together.
#[derive(Parser)]
#[command(name = "restore", no_binary_name = true)]
struct Request {
    #[command(flatten)]
    global: Global,
    #[command(flatten)]
    args: RestoreArgs,
}

/// The options as `restore` arguments (input and output are placeholders never opened) and
/// the run's global settings (the seed; quiet, server-wide threads).
///
/// # Errors
/// An unknown option, a value of the wrong type, or the CLI's own message for a bad value.
pub fn parse(o: &Map<String, Value>, threads: Option<usize>) -> Result<(RestoreArgs, Global), String> {
    let mut argv: Vec<String> = vec!["upload".into(), "-o".into(), "result.png".into(), "--quiet".into()];
    let mut simulate = true;
    for (k, v) in o {
        let key = k.replace('-', "_");
        if !ALLOWED.contains(&key.as_str()) {
            return Err(format!("unknown option '{k}' (allowed: {})", ALLOWED.join(", ")));
        }
        if key == "measurement" {
            simulate = match v.as_str() {
                Some("simulate") => true,
                Some("given") => false,
                _ => return Err(format!("option 'measurement' must be \"simulate\" or \"given\", got {v}")),
            };
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match v {
            Value::Bool(true) => argv.push(flag),
            Value::Bool(false) | Value::Null => {}
            Value::Number(n) => argv.extend([flag, n.to_string()]),
            Value::String(s) => argv.extend([flag, s.clone()]),
            _ => return Err(format!("option '{k}' must be a number, a string or true/false, got {v}")),
        }
    }
    if simulate {
        argv.push("--from-clean".into());
    }
    let r = Request::try_parse_from(&argv).map_err(|e| {
        // clap's message without its usage footer, as one line.
        let text = e.render().to_string();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
            .filter(|l| !l.is_empty())
            .collect();
        lines.join(" ").trim_start_matches("error: ").to_string()
    })?;
    let mut g = r.global;
    g.threads = threads;
    Ok((r.args, g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn options_read_as_flags_with_the_cli_messages() {
        let (a, g) =
            parse(&obj(serde_json::json!({"task": "sr4", "method": "diffpir", "steps": 20, "seed": 7})), None).unwrap();
        assert_eq!((a.method.as_str(), a.steps, g.seed, a.from_clean), ("diffpir", Some(20), 7, true));
        let (a, _) = parse(&obj(serde_json::json!({"task": "sr4", "measurement": "given"})), None).unwrap();
        assert!(!a.from_clean);
        let e = parse(&obj(serde_json::json!({"task": "sr4", "steps": 0})), None).err().unwrap();
        assert!(e.contains("--steps") && e.contains("1..="), "{e}");
        let e = parse(&obj(serde_json::json!({"task": "sr4", "mask": "/etc/passwd"})), None).err().unwrap();
        assert!(e.contains("unknown option 'mask'"), "{e}");
        let e = parse(&obj(serde_json::json!({"task": "sr4", "kernel": "k.png"})), None).err().unwrap();
        assert!(e.contains("unknown option 'kernel'"), "{e}");
        let e = parse(&obj(serde_json::json!({"task": "sr4", "steps": [1]})), None).err().unwrap();
        assert!(e.contains("'steps'"), "{e}");
        let e = parse(&obj(serde_json::json!({"steps": 3})), None).err().unwrap();
        assert!(e.contains("--task"), "{e}");
    }
}
