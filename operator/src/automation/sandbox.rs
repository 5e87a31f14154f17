//! The rhai sandbox: a workflow's `condition`, a Wait step's `until` and Rhai steps.
//!
//! One [`rhai::Engine`] is configured once and shared (it is `Send + Sync`); each call gets
//! a fresh scope holding `event`, `device`, `steps` (earlier steps' outputs), `vars`
//! (variables set by earlier Rhai steps) and `now` (unix seconds).
//!
//! Why it is safe to run scripts people write: rhai has no file, process or network API,
//! and the engine starts raw (no module resolver, so `import` fails; `eval` is disabled),
//! with only rhai's standard package (strings, arrays, maps, maths) and `set` registered.
//! What a script may consume is bounded: operations, call depth, expression depth, string,
//! array and map sizes, and wall-clock time. Each breach is an error that names the limit
//! and where the script was, so a person can fix it; `print` and `debug` go to tracing and
//! to the step's log (capped), never to stdout.
//!
//! Per-call state (the deadline, `set` variables, printed lines) lives in a thread-local
//! for the duration of the call: the engine is shared, and a call never leaves its thread.
use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    fmt,
    time::{Duration, Instant},
};

use cdot_crds::{validation::FieldError, wire::automation::Event, workflow::WorkflowSpec};
use rhai::{
    AST, Dynamic, Engine, EvalAltResult, LexError, ParseErrorType, Position, Scope,
    packages::{Package, StandardPackage},
};
use serde::Serialize;
use serde_json::Value;

/// Most lines of `print`/`debug` kept per call, and most bytes of one line.
const MAX_LOG_LINES: usize = 100;
const MAX_LOG_LINE_BYTES: usize = 1024;
/// Checking the clock on every operation would cost more than the operation.
const CLOCK_EVERY_OPS: u64 = 256;
/// Longest name `set` accepts.
const MAX_VAR_NAME: usize = 128;

/// What one call may consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    /// Nesting of expressions at the top level (function bodies get half).
    pub max_expr_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_len: usize,
    pub max_map_len: usize,
    /// Wall-clock time of one call.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_bytes: 64 * 1024,
            max_array_len: 10_000,
            max_map_len: 10_000,
            time: Duration::from_secs(1),
        }
    }
}

/// Which limit a script broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Operations(u64),
    Time(Duration),
    CallDepth(usize),
    ExprDepth(usize),
    StringSize(usize),
    ArraySize(usize),
    MapSize(usize),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operations(n) => write!(f, "the operations limit ({n})"),
            Self::Time(d) if d.subsec_millis() == 0 => {
                write!(f, "the time limit ({}s)", d.as_secs())
            }
            Self::Time(d) => write!(f, "the time limit ({}ms)", d.as_millis()),
            Self::CallDepth(n) => write!(f, "the call depth limit ({n})"),
            Self::ExprDepth(n) => write!(f, "the expression depth limit ({n})"),
            Self::StringSize(n) => write!(f, "the string size limit ({n} bytes)"),
            Self::ArraySize(n) => write!(f, "the array size limit ({n})"),
            Self::MapSize(n) => write!(f, "the map size limit ({n})"),
        }
    }
}

/// Where in the script, `line:column` (`?` when rhai does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl From<Position> for At {
    fn from(p: Position) -> Self {
        Self {
            line: p.line(),
            column: p.position(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}"),
            (Some(l), None) => write!(f, "{l}"),
            _ => f.write_str("?"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("rhai script does not parse at {at}: {message}")]
    Syntax { message: String, at: At },
    #[error("rhai script uses `{what}` at {at}, which the sandbox does not allow")]
    Forbidden { what: String, at: At },
    #[error("rhai script broke {limit} at {at}")]
    Limit { limit: Limit, at: At },
    #[error("rhai script failed at {at}: {message}")]
    Runtime { message: String, at: At },
    #[error("rhai script's {what} breaks {limit}")]
    Oversized { what: String, limit: Limit },
    #[error("rhai condition returned {found}, not a bool")]
    NotBool { found: String },
    #[error("rhai script returned a value that is not JSON: {message}")]
    Output { message: String },
    #[error("rhai inputs could not be converted: {message}")]
    Input { message: String },
}

impl SandboxError {
    /// Short label for metrics and audit entries.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "syntax",
            Self::Forbidden { .. } => "forbidden",
            Self::Limit { .. } | Self::Oversized { .. } => "limit",
            Self::Runtime { .. } => "runtime",
            Self::NotBool { .. } => "not_bool",
            Self::Output { .. } => "output",
            Self::Input { .. } => "input",
        }
    }
}

/// Scripts of `spec` (condition, Rhai steps, Wait conditions) that do not compile, each at
/// its field: a manifest with one is refused (standalone mode) or marked invalid (the
/// reconciler), instead of failing every run. Compiled with the default limits.
pub fn script_errors(spec: &WorkflowSpec) -> Vec<FieldError> {
    static CHECKER: std::sync::LazyLock<Sandbox> =
        std::sync::LazyLock::new(|| Sandbox::new(Limits::default()));
    let condition = spec
        .condition
        .as_deref()
        .map(|c| ("spec.condition".to_owned(), c));
    let steps = spec.steps.iter().enumerate().flat_map(|(i, s)| {
        [
            s.rhai
                .as_deref()
                .map(|r| (format!("spec.steps[{i}].rhai"), r)),
            s.until
                .as_deref()
                .map(|u| (format!("spec.steps[{i}].until"), u)),
        ]
        .into_iter()
        .flatten()
    });
    condition
        .into_iter()
        .chain(steps)
        .filter_map(|(path, source)| {
            let e = CHECKER.compiled(source).err()?;
            Some(FieldError::new(path, e.to_string()))
        })
        .collect()
}

/// A compiled script, reusable for any number of calls.
#[derive(Clone, Debug)]
pub struct Script(AST);

/// The device as scripts see it (`device`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceView {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub class: Option<String>,
    pub site: Option<String>,
}

/// Everything a script sees.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub event: &'a Event,
    pub device: &'a DeviceView,
    /// Outputs of earlier steps by step name (`steps`).
    pub steps: &'a BTreeMap<String, Value>,
    /// Variables set by earlier Rhai steps (`vars`).
    pub vars: &'a BTreeMap<String, Value>,
    /// Unix seconds (`now`).
    pub now: i64,
}

/// What a Rhai step produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutput {
    /// The script's value.
    pub value: Value,
    /// Variables it set with `set(name, value)`.
    pub set: BTreeMap<String, Value>,
    /// What it printed (`print`, `debug`), capped.
    pub log: Vec<String>,
}

/// State of the call running on this thread.
#[derive(Default)]
struct Call {
    steps: bool,
    set: BTreeMap<String, Dynamic>,
    log: Vec<String>,
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

/// Installs a call's state for its duration and restores the previous one on drop (so a
/// panic or an early return never leaves a stale deadline behind).
struct CallGuard {
    deadline: Option<Instant>,
    call: Option<Call>,
}

impl CallGuard {
    fn enter(deadline: Instant, steps: bool) -> Self {
        Self {
            deadline: DEADLINE.with(|d| d.replace(Some(deadline))),
            call: CALL.with(|c| {
                c.replace(Some(Call {
                    steps,
                    ..Call::default()
                }))
            }),
        }
    }

    fn take(&self) -> Call {
        CALL.with(|c| c.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.deadline));
        let prev = self.call.take();
        CALL.with(|c| *c.borrow_mut() = prev);
    }
}

fn log_line(line: &str) {
    tracing::debug!(target: "cdot_operator::automation::rhai", "{line}");
    CALL.with(|c| {
        if let Some(call) = c.borrow_mut().as_mut() {
            match call.log.len() {
                n if n < MAX_LOG_LINES => {
                    let mut end = line.len().min(MAX_LOG_LINE_BYTES);
                    while !line.is_char_boundary(end) {
                        end -= 1;
                    }
                    call.log.push(line[..end].to_owned());
                }
                n if n == MAX_LOG_LINES => call.log.push("(further output dropped)".into()),
                _ => {}
            }
        }
    });
}

/// `set(name, value)`: a variable for later steps.
fn set_var(name: &str, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
    if name.is_empty() || name.len() > MAX_VAR_NAME {
        return Err(format!("set: a variable name has 1 to {MAX_VAR_NAME} bytes").into());
    }
    CALL.with(|c| match c.borrow_mut().as_mut() {
        Some(call) if call.steps => {
            call.set.insert(name.to_owned(), value);
            Ok(())
        }
        _ => Err("set() is only available in Rhai steps, not in conditions".into()),
    })
}

/// The rhai engine with its limits.
pub struct Sandbox {
    engine: Engine,
    limits: Limits,
    /// Compiled scripts by source: a workflow's condition and steps are evaluated again
    /// and again, and compiling costs several evaluations.
    compiled: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Script>>>,
}

/// Most compiled scripts kept; the cache starts over when full (workflow edits leave old
/// sources behind).
const COMPILED_KEPT: usize = 4096;

impl Sandbox {
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new_raw();
        engine.register_global_module(StandardPackage::new().as_shared_module());
        engine
            .disable_symbol("eval")
            .disable_symbol("import")
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2)
            .set_max_string_size(limits.max_string_bytes)
            .set_max_array_size(limits.max_array_len)
            .set_max_map_size(limits.max_map_len)
            .set_max_modules(0);
        engine.on_progress(|ops| {
            if ops % CLOCK_EVERY_OPS != 0 {
                return None;
            }
            match DEADLINE.with(Cell::get) {
                Some(deadline) if Instant::now() >= deadline => Some(Dynamic::from("time")),
                _ => None,
            }
        });
        engine.on_print(log_line);
        engine.on_debug(|s, _, pos| log_line(&format!("[{}] {s}", At::from(pos))));
        engine.register_fn("set", set_var);
        Self {
            engine,
            limits,
            compiled: std::sync::Mutex::default(),
        }
    }

    /// [`Sandbox::compile`], once per distinct source.
    pub fn compiled(&self, source: &str) -> Result<std::sync::Arc<Script>, SandboxError> {
        let lock = || self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(script) = lock().get(source) {
            return Ok(script.clone());
        }
        let script = std::sync::Arc::new(self.compile(source)?);
        let mut cache = lock();
        if cache.len() >= COMPILED_KEPT {
            cache.clear();
        }
        cache.insert(source.to_owned(), script.clone());
        Ok(script)
    }

    /// Parses `source`; syntax errors name the line and column.
    pub fn compile(&self, source: &str) -> Result<Script, SandboxError> {
        self.engine.compile(source).map(Script).map_err(|e| {
            let at = At::from(e.position());
            match e.err_type() {
                ParseErrorType::ExprTooDeep => SandboxError::Limit {
                    limit: Limit::ExprDepth(self.limits.max_expr_depth),
                    at,
                },
                ParseErrorType::LiteralTooLarge(..) => SandboxError::Limit {
                    limit: Limit::StringSize(self.limits.max_string_bytes),
                    at,
                },
                ParseErrorType::Reserved(word)
                | ParseErrorType::BadInput(LexError::ImproperSymbol(word, _))
                    if matches!(word.as_str(), "eval" | "import") =>
                {
                    SandboxError::Forbidden {
                        what: word.clone(),
                        at,
                    }
                }
                // `event.package` reads naturally but `package` is one of rhai's reserved
                // words: say how to read such a field instead.
                ParseErrorType::Reserved(word) => SandboxError::Syntax {
                    message: format!(
                        "{}; a field with that name is read with brackets, as in \
                         event[\"{word}\"]",
                        e.err_type()
                    ),
                    at,
                },
                other => SandboxError::Syntax {
                    message: other.to_string(),
                    at,
                },
            }
        })
    }

    /// A condition (`condition`, `until`): must return a bool.
    pub fn eval_bool(&self, script: &Script, inputs: &Inputs<'_>) -> Result<bool, SandboxError> {
        let _call = CallGuard::enter(Instant::now() + self.limits.time, false);
        self.eval(script, inputs)?
            .as_bool()
            .map_err(|found| SandboxError::NotBool {
                found: describe_type(found),
            })
    }

    /// A Rhai step: its value, the variables it `set` and what it printed.
    pub fn run(&self, script: &Script, inputs: &Inputs<'_>) -> Result<StepOutput, SandboxError> {
        let guard = CallGuard::enter(Instant::now() + self.limits.time, true);
        let value = self.eval(script, inputs)?;
        let call = guard.take();
        let json = |what: &dyn Fn() -> String, d: &Dynamic| {
            if let Some(limit) = self.oversized(d) {
                return Err(SandboxError::Oversized {
                    what: what(),
                    limit,
                });
            }
            rhai::serde::from_dynamic::<Value>(d).map_err(|e| SandboxError::Output {
                message: e.to_string(),
            })
        };
        Ok(StepOutput {
            value: json(&|| "result".into(), &value)?,
            set: call
                .set
                .iter()
                .map(|(k, v)| Ok((k.clone(), json(&|| format!("variable {k}"), v)?)))
                .collect::<Result<_, SandboxError>>()?,
            log: call.log,
        })
    }

    fn eval(&self, script: &Script, inputs: &Inputs<'_>) -> Result<Dynamic, SandboxError> {
        let mut scope = Scope::new();
        scope.push_constant("event", dynamic(inputs.event)?);
        scope.push_constant("device", dynamic(inputs.device)?);
        scope.push_constant("steps", dynamic(inputs.steps)?);
        scope.push_constant("vars", dynamic(inputs.vars)?);
        scope.push_constant("now", inputs.now);
        self.engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &script.0)
            .map_err(|e| self.error(*e))
    }

    /// The first limit a value breaks: rhai does not measure a map that grows by index
    /// writes, so what leaves the sandbox is measured here.
    fn oversized(&self, d: &Dynamic) -> Option<Limit> {
        let l = &self.limits;
        if let Some(s) = d.read_lock::<rhai::ImmutableString>() {
            return (s.len() > l.max_string_bytes).then_some(Limit::StringSize(l.max_string_bytes));
        }
        if let Some(a) = d.read_lock::<rhai::Array>() {
            if a.len() > l.max_array_len {
                return Some(Limit::ArraySize(l.max_array_len));
            }
            return a.iter().find_map(|v| self.oversized(v));
        }
        if let Some(m) = d.read_lock::<rhai::Map>() {
            if m.len() > l.max_map_len {
                return Some(Limit::MapSize(l.max_map_len));
            }
            return m.values().find_map(|v| self.oversized(v));
        }
        None
    }

    fn error(&self, e: EvalAltResult) -> SandboxError {
        // The innermost error says what broke; its position is inside the function body.
        let (e, outer) = innermost(e, Position::NONE);
        let pos = if e.position().is_none() {
            outer
        } else {
            e.position()
        };
        let at = At::from(pos);
        let l = &self.limits;
        let limit = |limit| SandboxError::Limit { limit, at };
        match e {
            EvalAltResult::ErrorTooManyOperations(_) => limit(Limit::Operations(l.max_operations)),
            EvalAltResult::ErrorTerminated(..) => limit(Limit::Time(l.time)),
            EvalAltResult::ErrorStackOverflow(_) => limit(Limit::CallDepth(l.max_call_levels)),
            EvalAltResult::ErrorDataTooLarge(what, _) if what.contains("string") => {
                limit(Limit::StringSize(l.max_string_bytes))
            }
            EvalAltResult::ErrorDataTooLarge(what, _) if what.contains("array") => {
                limit(Limit::ArraySize(l.max_array_len))
            }
            EvalAltResult::ErrorDataTooLarge(..) => limit(Limit::MapSize(l.max_map_len)),
            EvalAltResult::ErrorModuleNotFound(..) | EvalAltResult::ErrorTooManyModules(_) => {
                SandboxError::Forbidden {
                    what: "import".into(),
                    at,
                }
            }
            EvalAltResult::ErrorFunctionNotFound(f, _) => SandboxError::Runtime {
                message: format!(
                    "no function {f} (the sandbox has no file, process or network API)"
                ),
                at,
            },
            other => SandboxError::Runtime {
                message: other.to_string(),
                at,
            },
        }
    }
}

fn innermost(e: EvalAltResult, outer: Position) -> (EvalAltResult, Position) {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos)
        | EvalAltResult::ErrorInModule(_, inner, pos) => {
            innermost(*inner, if pos.is_none() { outer } else { pos })
        }
        other => (other, outer),
    }
}

fn describe_type(name: &str) -> String {
    match name {
        "()" => "nothing (`()`)".into(),
        "i64" | "i32" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "string" | "ImmutableString" => "a string".into(),
        "char" => "a character".into(),
        "array" => "an array".into(),
        "map" => "a map".into(),
        other => format!("a value of type {other}"),
    }
}

fn dynamic(v: &impl Serialize) -> Result<Dynamic, SandboxError> {
    rhai::serde::to_dynamic(v).map_err(|e| SandboxError::Input {
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use cdot_crds::workflow::TriggerType;
    use serde_json::json;

    use super::*;

    fn event() -> Event {
        Event {
            type_: Some(TriggerType::ServiceFailed),
            device: Some("web-01".into()),
            service: Some("nginx.service".into()),
            value: Some(3.0),
            labels: [("team".to_owned(), "web".to_owned())].into(),
            ..Event::default()
        }
    }

    fn device() -> DeviceView {
        DeviceView {
            name: "web-01".into(),
            namespace: "acme".into(),
            labels: [("tier".to_owned(), "web".to_owned())].into(),
            class: Some("Server".into()),
            site: Some("hq".into()),
        }
    }

    struct Fixture {
        event: Event,
        device: DeviceView,
        steps: BTreeMap<String, Value>,
        vars: BTreeMap<String, Value>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                event: event(),
                device: device(),
                steps: [("check".to_owned(), json!({"exitCode": 0, "stdout": "ok"}))].into(),
                vars: [("attempts".to_owned(), json!(2))].into(),
            }
        }

        fn inputs(&self) -> Inputs<'_> {
            Inputs {
                event: &self.event,
                device: &self.device,
                steps: &self.steps,
                vars: &self.vars,
                now: 1_796_000_000,
            }
        }
    }

    fn cond(sandbox: &Sandbox, source: &str) -> Result<bool, SandboxError> {
        let f = Fixture::new();
        sandbox.eval_bool(&sandbox.compile(source)?, &f.inputs())
    }

    fn run(sandbox: &Sandbox, source: &str) -> Result<StepOutput, SandboxError> {
        let f = Fixture::new();
        sandbox.run(&sandbox.compile(source)?, &f.inputs())
    }

    fn fails_with(result: Result<impl fmt::Debug, SandboxError>, wanted: &str) -> SandboxError {
        let e = result.expect_err(wanted);
        assert!(e.to_string().contains(wanted), "{e} (wanted {wanted:?})");
        e
    }

    #[test]
    fn conditions_see_event_device_and_labels() {
        let s = Sandbox::new(Limits::default());
        for (source, want) in [
            (r#"device.labels["tier"] == "web""#, true),
            (r#"device.labels.tier == "db""#, false),
            (
                r#"event.type == "ServiceFailed" && event.service == "nginx.service""#,
                true,
            ),
            ("event.value >= 3.0", true),
            (r#"event.labels.team == "web" && device.site == "hq""#, true),
            (
                r#"device.class == "Server" && device.namespace == "acme""#,
                true,
            ),
            // Absent fields are `()`, not errors.
            ("event.metric == ()", true),
            (r#"steps.check.stdout == "ok" && vars.attempts < 3"#, true),
            ("now > 1700000000", true),
        ] {
            assert_eq!(cond(&s, source).expect(source), want, "{source}");
        }
    }

    #[test]
    fn a_condition_must_return_a_bool() {
        let s = Sandbox::new(Limits::default());
        let e = fails_with(cond(&s, r#"device.name"#), "returned a string, not a bool");
        assert_eq!(e.label(), "not_bool");
        fails_with(cond(&s, "let x = 1;"), "returned nothing");
        fails_with(
            cond(&s, r#"set("x", 1); true"#),
            "only available in Rhai steps",
        );
    }

    #[test]
    fn steps_set_variables_and_return_values() {
        let s = Sandbox::new(Limits::default());
        let out = run(
            &s,
            r#"
            let n = vars.attempts + 1;
            set("attempts", n);
            set("owner", #{ team: event.labels.team, hosts: [device.name] });
            print("attempt " + n);
            #{ ok: true, n: n }
            "#,
        )
        .expect("run");
        assert_eq!(out.value, json!({"ok": true, "n": 3}));
        assert_eq!(out.set["attempts"], json!(3));
        assert_eq!(
            out.set["owner"],
            json!({"team": "web", "hosts": ["web-01"]})
        );
        assert_eq!(out.log, vec!["attempt 3".to_owned()]);
        fails_with(run(&s, r#"set("", 1)"#), "variable name");
    }

    #[test]
    fn printed_output_is_capped() {
        let s = Sandbox::new(Limits::default());
        let out = run(&s, r#"for i in 0..500 { print("line " + i) } 0"#).expect("run");
        assert_eq!(out.log.len(), MAX_LOG_LINES + 1);
        assert_eq!(
            out.log.last().map(String::as_str),
            Some("(further output dropped)")
        );
    }

    #[test]
    fn file_and_code_loading_fail() {
        let s = Sandbox::new(Limits::default());
        let e = fails_with(
            s.compile(r#"import "fs" as fs; fs::read("/etc/passwd")"#),
            "`import`",
        );
        assert_eq!(e.label(), "forbidden");
        fails_with(s.compile(r#"eval("1 + 1")"#), "`eval`");
        fails_with(run(&s, r#"open("/etc/passwd")"#), "no function open");
        fails_with(run(&s, r#"system("id")"#), "no function system");
    }

    #[test]
    fn an_infinite_loop_breaks_the_operations_limit() {
        // A generous clock, so that a busy machine does not hit the time limit first.
        let s = Sandbox::new(Limits {
            time: Duration::from_secs(60),
            ..Limits::default()
        });
        let e = fails_with(
            run(&s, "let x = 0;\nloop { x += 1; }"),
            "broke the operations limit (1000000) at 2:",
        );
        assert_eq!(e.label(), "limit");
    }

    #[test]
    fn a_slow_loop_breaks_the_time_limit() {
        let s = Sandbox::new(Limits {
            max_operations: u64::MAX,
            time: Duration::from_millis(50),
            ..Limits::default()
        });
        let started = Instant::now();
        fails_with(run(&s, "loop { }"), "broke the time limit (50ms)");
        assert!(started.elapsed() < Duration::from_secs(2));
        let s = Sandbox::new(Limits {
            max_operations: u64::MAX,
            ..Limits::default()
        });
        fails_with(run(&s, "loop { }"), "broke the time limit (1s)");
    }

    #[test]
    fn huge_allocations_break_size_limits() {
        let s = Sandbox::new(Limits::default());
        fails_with(
            run(&s, r#"let s = "x"; loop { s += s; }"#),
            "broke the string size limit (65536 bytes)",
        );
        fails_with(
            run(&s, "let a = []; loop { a.push(1); }"),
            "broke the array size limit (10000)",
        );
        let s = Sandbox::new(Limits {
            max_map_len: 100,
            ..Limits::default()
        });
        fails_with(
            run(
                &s,
                "let m = #{}; let i = 0; loop { m += #{}; m[`k${i}`] = i; i += 1; }",
            ),
            "broke the map size limit (100)",
        );
        // Writing new keys by index is not measured by rhai: the result and the variables
        // are checked before they leave the sandbox.
        fails_with(
            run(&s, "let m = #{}; for i in 0..200 { m[`k${i}`] = i; } m"),
            "result breaks the map size limit (100)",
        );
        fails_with(
            run(
                &s,
                r#"let m = #{}; for i in 0..200 { m[`k${i}`] = i; } set("big", m); 1"#,
            ),
            "variable big breaks the map size limit (100)",
        );
    }

    #[test]
    fn deep_recursion_breaks_the_call_depth_limit() {
        let s = Sandbox::new(Limits::default());
        fails_with(
            run(&s, "fn down(n) { down(n + 1) }\ndown(0)"),
            "broke the call depth limit (32) at 2:1",
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let s = Sandbox::new(Limits::default());
        let e = fails_with(
            s.compile("let a = 1;\nlet b = (a + ;"),
            "does not parse at 2:",
        );
        let SandboxError::Syntax { at, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(at.line, Some(2));
        assert!(at.column.is_some());
    }

    #[test]
    fn runtime_errors_carry_their_position() {
        let s = Sandbox::new(Limits::default());
        fails_with(
            run(&s, "let a = 1;\nlet b = a + \"x\" * 2;"),
            "failed at 2:",
        );
        fails_with(run(&s, "let a = [];\na[3]"), "failed at 2:");
    }

    #[test]
    fn the_engine_is_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Sandbox>();
        shared::<Script>();
    }
}
