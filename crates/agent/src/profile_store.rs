//! The profile store: one directory per profile under a scope directory, holding the input bytes
//! exactly as given (`original`), the plain ProfileXML text (`profile.xml`) and `meta.toml`.
//! Every write goes to a hidden temporary directory that is fsynced and then renamed into place,
//! so a crash leaves either the whole profile or none of it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use profile::{
    ErrorKind, ParsedProfile, ProfileError, ProfileErrors, ProfileWarning, Scope, SourceForm,
    check_profile_name,
};

const PROFILE_XML: &str = "profile.xml";
const ORIGINAL: &str = "original";
const META: &str = "meta.toml";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no profile named \"{0}\"")]
    NotFound(String),
    #[error("a {scope} profile named \"{name}\" already exists (remove it first)")]
    Exists { name: String, scope: Scope },
    #[error("invalid profile name \"{name}\": {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("{0}")]
    Invalid(ProfileErrors),
    #[error("the LockDown profile \"{by}\" forbids removing other profiles (remove it first)")]
    LockedDown { by: String },
    #[error("{path}: damaged store entry: {why}")]
    Damaged { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    name: String,
    scope: String,
    form: String,
    /// The file the profile was added from, for the admin's reference.
    source_file: String,
}

/// A profile as kept in the store.
#[derive(Debug, Clone)]
pub struct StoredProfile {
    pub name: String,
    pub scope: Scope,
    pub form: SourceForm,
    pub source_file: String,
    pub dir: PathBuf,
    /// The bytes as they were added (ProfileXML, escaped or SyncML).
    pub original: Vec<u8>,
    pub parsed: ParsedProfile,
}

/// Device- and user-scope profile directories.
#[derive(Debug, Clone)]
pub struct Store {
    device_dir: PathBuf,
    user_dir: PathBuf,
}

impl Store {
    /// The system locations: `/etc/aovpn/profiles` (device, root-owned) and
    /// `$XDG_CONFIG_HOME/aovpn/profiles` or `~/.config/aovpn/profiles` (user).
    pub fn system() -> Store {
        Store::system_at(Path::new("/etc/aovpn"))
    }

    /// Like [`Store::system`] with the system directory `system_dir` (device profiles in
    /// `system_dir/profiles`), as the agent's `--config-dir` moves it.
    pub fn system_at(system_dir: &Path) -> Store {
        Store {
            device_dir: system_dir.join("profiles"),
            user_dir: user_config_dir().join("profiles"),
        }
    }

    /// A store with the given device- and user-scope directories.
    pub fn new(device_dir: PathBuf, user_dir: PathBuf) -> Store {
        Store {
            device_dir,
            user_dir,
        }
    }

    /// A store rooted at `dir`: `dir/device` and `dir/user`.
    pub fn at(dir: &Path) -> Store {
        Store {
            device_dir: dir.join("device"),
            user_dir: dir.join("user"),
        }
    }

    pub fn dir(&self, scope: Scope) -> &Path {
        match scope {
            Scope::Device => &self.device_dir,
            Scope::User => &self.user_dir,
        }
    }

    /// Every stored profile, device scope first, each sorted by name.
    pub fn list(&self) -> Result<Vec<StoredProfile>, StoreError> {
        let mut out = Vec::new();
        for scope in [Scope::Device, Scope::User] {
            let dir = self.dir(scope);
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(dir)(e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io(dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && entry.path().is_dir() {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                out.push(self.load(scope, &name)?);
            }
        }
        Ok(out)
    }

    /// The profile named `name`, in whichever scope holds it.
    pub fn get(&self, name: &str) -> Result<StoredProfile, StoreError> {
        check_profile_name(name).map_err(|why| StoreError::InvalidName {
            name: name.to_owned(),
            why,
        })?;
        for scope in [Scope::Device, Scope::User] {
            if self.dir(scope).join(name).is_dir() {
                return self.load(scope, name);
            }
        }
        Err(StoreError::NotFound(name.to_owned()))
    }

    fn load(&self, scope: Scope, name: &str) -> Result<StoredProfile, StoreError> {
        let dir = self.dir(scope).join(name);
        let read = |f: &str| {
            let path = dir.join(f);
            fs::read(&path).map_err(io(&path))
        };
        let meta_bytes = read(META)?;
        let damaged = |why: String| StoreError::Damaged {
            path: dir.clone(),
            why,
        };
        let meta: Meta = std::str::from_utf8(&meta_bytes)
            .map_err(|e| damaged(e.to_string()))
            .and_then(|s| toml::from_str(s).map_err(|e| damaged(e.to_string())))?;
        let form = SourceForm::parse(&meta.form).ok_or_else(|| damaged("unknown form".into()))?;
        if meta.name != name || Scope::parse(&meta.scope) != Some(scope) {
            return Err(damaged("meta.toml does not match the directory".into()));
        }
        let xml_path = dir.join(PROFILE_XML);
        let parsed = ParsedProfile::parse(&xml_path.to_string_lossy(), &read(PROFILE_XML)?)
            .map_err(|e| damaged(e.to_string()))?;
        Ok(StoredProfile {
            name: meta.name,
            scope,
            form,
            source_file: meta.source_file,
            original: read(ORIGINAL)?,
            dir,
            parsed,
        })
    }

    /// Validate `parsed` for `scope` and store it under `name`, keeping `original` byte-for-byte.
    /// Refuses an existing name and a second device tunnel.
    pub fn add(
        &self,
        name: &str,
        scope: Scope,
        parsed: &ParsedProfile,
        original: &[u8],
    ) -> Result<(StoredProfile, Vec<ProfileWarning>), StoreError> {
        check_profile_name(name).map_err(|why| StoreError::InvalidName {
            name: name.to_owned(),
            why,
        })?;
        let warnings = parsed.validate(Some(scope)).map_err(StoreError::Invalid)?;
        for s in [Scope::Device, Scope::User] {
            if self.dir(s).join(name).exists() {
                return Err(StoreError::Exists {
                    name: name.to_owned(),
                    scope: s,
                });
            }
        }
        let existing = self.list()?;
        let refuse = |path: &str, kind: ErrorKind| {
            let (element, pos) = parsed.spans.locate(path);
            let file = parsed.file.clone();
            let element = element.to_owned();
            StoreError::Invalid(ProfileErrors(vec![ProfileError {
                file,
                pos,
                element,
                kind,
            }]))
        };
        if let Some(locked) = existing
            .iter()
            .find(|p| p.parsed.profile.lock_down == Some(true))
        {
            let existing = locked.name.clone();
            return Err(refuse(
                "VPNProfile",
                ErrorKind::LockDownProfileExists { existing },
            ));
        }
        if parsed.profile.is_device_tunnel()
            && let Some(first) = existing
                .iter()
                .find(|p| p.parsed.profile.is_device_tunnel())
        {
            let existing = first.name.clone();
            return Err(refuse(
                "VPNProfile/DeviceTunnel",
                ErrorKind::SecondDeviceTunnel { existing },
            ));
        }
        let scope_dir = self.dir(scope);
        let private = scope == Scope::User;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(if private { 0o700 } else { 0o755 })
            .create(scope_dir)
            .map_err(io(scope_dir))?;
        let tmp = scope_dir.join(unique_hidden_name("tmp"));
        fs::DirBuilder::new()
            .mode(if private { 0o700 } else { 0o755 })
            .create(&tmp)
            .map_err(io(&tmp))?;
        let result = (|| {
            let meta = Meta {
                name: name.to_owned(),
                scope: scope.as_str().to_owned(),
                form: parsed.form.as_str().to_owned(),
                source_file: parsed.file.clone(),
            };
            let meta = toml::to_string(&meta).map_err(|e| StoreError::Damaged {
                path: tmp.clone(),
                why: e.to_string(),
            })?;
            write_synced(&tmp.join(ORIGINAL), original, private)?;
            write_synced(
                &tmp.join(PROFILE_XML),
                parsed.profile_xml.as_bytes(),
                private,
            )?;
            write_synced(&tmp.join(META), meta.as_bytes(), private)?;
            sync_dir(&tmp)?;
            let target = scope_dir.join(name);
            fs::rename(&tmp, &target).map_err(io(&target))?;
            sync_dir(scope_dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok((self.load(scope, name)?, warnings))
    }

    /// Remove a profile (also a damaged one): renamed out of sight atomically first, then
    /// deleted. Returns the scope it was in.
    pub fn remove(&self, name: &str) -> Result<Scope, StoreError> {
        check_profile_name(name).map_err(|why| StoreError::InvalidName {
            name: name.to_owned(),
            why,
        })?;
        let scope = [Scope::Device, Scope::User]
            .into_iter()
            .find(|s| self.dir(*s).join(name).is_dir())
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        // A damaged entry must stay removable, so damaged entries do not block here.
        for s in [Scope::Device, Scope::User] {
            if let Ok(entries) = fs::read_dir(self.dir(s)) {
                for other in entries.flatten() {
                    let other = other.file_name().to_string_lossy().into_owned();
                    if other != name
                        && !other.starts_with('.')
                        && let Ok(p) = self.load(s, &other)
                        && p.parsed.profile.lock_down == Some(true)
                    {
                        return Err(StoreError::LockedDown { by: p.name });
                    }
                }
            }
        }
        let scope_dir = self.dir(scope);
        let entry = scope_dir.join(name);
        let doomed = scope_dir.join(unique_hidden_name("removed"));
        fs::rename(&entry, &doomed).map_err(io(&entry))?;
        sync_dir(scope_dir)?;
        fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
        Ok(scope)
    }
}

/// The user's aovpn directory: `$XDG_CONFIG_HOME/aovpn`, else `~/.config/aovpn`.
pub fn user_config_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("aovpn")
}

fn unique_hidden_name(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{what}-{}-{n}", std::process::id())
}

fn write_synced(path: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}
