//! Mindory's desktop app: a thin Tauri client of `mindoryd`.
//!
//! The app holds no library state of its own. [`client::Client`] is the one
//! connection to the daemon; the Tauri commands below are one-to-one with
//! its RPCs, the daemon's `Subscribe` stream is forwarded as Tauri events
//! (the webview refreshes on them, it never polls), and streamed assistant
//! calls arrive as events tagged with a request id. The webview lives in
//! `client-tauri/src/` (TypeScript, built into `client-tauri/dist/`).

pub mod client;
pub mod launch;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tauri::{Emitter, Manager, State};

use client::{AssistantArgs, Client, ClientError, EventSink, PassageAt, SearchArgs};

/// How often the app tries again while the daemon is down.
const RECONNECT_EVERY: Duration = Duration::from_millis(700);

/// Events go to every webview of the app.
struct AppSink(tauri::AppHandle);

impl EventSink for AppSink {
    fn emit(&self, name: &str, payload: Value) {
        if let Err(e) = self.0.emit(name, payload) {
            tracing::warn!(event = name, error = %e, "could not deliver an event to the webview");
        }
    }
}

type Shared<'a> = State<'a, Arc<Client>>;

#[tauri::command]
async fn hello(c: Shared<'_>) -> Result<Value, ClientError> {
    c.hello().await
}
#[tauri::command]
async fn status(c: Shared<'_>) -> Result<Value, ClientError> {
    c.status().await
}
#[tauri::command]
async fn list_books(c: Shared<'_>) -> Result<Value, ClientError> {
    c.list_books().await
}
#[tauri::command]
async fn get_book(c: Shared<'_>, id: u64) -> Result<Value, ClientError> {
    c.get_book(id).await
}
#[tauri::command]
async fn get_passage(c: Shared<'_>, book_id: u64, at: PassageAt) -> Result<Value, ClientError> {
    c.get_passage(book_id, at).await
}
#[tauri::command]
async fn add_paths(c: Shared<'_>, paths: Vec<String>) -> Result<Value, ClientError> {
    c.add_paths(paths).await
}
#[tauri::command]
async fn remove_book(c: Shared<'_>, id: u64) -> Result<Value, ClientError> {
    c.remove_book(id).await
}
#[tauri::command]
async fn reindex(c: Shared<'_>, book_ids: Vec<u64>) -> Result<Value, ClientError> {
    c.reindex(book_ids).await
}
#[tauri::command]
async fn list_folders(c: Shared<'_>) -> Result<Value, ClientError> {
    c.list_folders().await
}
#[tauri::command]
async fn add_folder(c: Shared<'_>, path: String) -> Result<Value, ClientError> {
    c.add_folder(path).await
}
#[tauri::command]
async fn remove_folder(c: Shared<'_>, path: String) -> Result<Value, ClientError> {
    c.remove_folder(path).await
}
#[tauri::command]
async fn search(c: Shared<'_>, args: SearchArgs) -> Result<Value, ClientError> {
    c.search(args).await
}
#[tauri::command]
async fn llm_info(c: Shared<'_>) -> Result<Value, ClientError> {
    c.llm_info().await
}
/// Ask, Summarize and Explain: returns the request id; events follow.
#[tauri::command]
async fn assistant(app: tauri::AppHandle, c: Shared<'_>, args: AssistantArgs) -> Result<u64, ClientError> {
    c.start_assistant(args, Arc::new(AppSink(app))).await
}
#[tauri::command]
fn stop(c: Shared<'_>, request: u64) -> bool {
    c.stop(request)
}
/// The "daemon not running" screen's button.
#[tauri::command]
fn start_daemon(c: Shared<'_>) -> Result<String, String> {
    launch::start_daemon(c.socket())
        .map(|p| p.display().to_string())
        .map_err(|e| e.to_string())
}

/// Where the window opens: `--view library|search|reader|ask|rag` and
/// `--query TEXT` (a search to run, or a question to ask, at start). Scripts
/// and the smoke test use them to open the app on a given view.
#[tauri::command]
fn startup() -> Value {
    serde_json::json!({"view": arg_value("--view"), "query": arg_value("--query")})
}

/// The value after `flag` on the command line, if any.
fn arg_value(flag: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == flag {
            return args.next();
        }
    }
    None
}

/// Builds and runs the app; returns when the last window closes.
pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let client = Client::new(Client::socket_from_env());
    tracing::info!(socket = %client.socket().display(), "mindory-desktop starting");
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(Arc::clone(&client))
        .setup(move |app| {
            let sink: Arc<dyn EventSink> = Arc::new(AppSink(app.handle().clone()));
            let follower = Arc::clone(&client);
            tauri::async_runtime::spawn(follower.follow_events(sink, RECONNECT_EVERY));
            // `--size 800x600` opens the window at that size (the layout is
            // checked at 1280×800 and 800×600).
            if let Some((w, h)) = arg_value("--size").and_then(|s| {
                let (w, h) = s.split_once('x')?;
                Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?))
            }) {
                if let Some(window) = app.get_webview_window("main") {
                    window.set_size(tauri::LogicalSize::new(w, h))?;
                }
            }
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            hello,
            status,
            list_books,
            get_book,
            get_passage,
            add_paths,
            remove_book,
            reindex,
            list_folders,
            add_folder,
            remove_folder,
            search,
            llm_info,
            assistant,
            stop,
            start_daemon,
            startup
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("mindory-desktop could not start: {e}; is a display available (DISPLAY or WAYLAND_DISPLAY)?");
        std::process::exit(1);
    }
}
