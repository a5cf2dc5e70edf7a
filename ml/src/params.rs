//! Hyperparameters as data.
//!
//! Every estimator's hyperparameters are readable and settable by name as
//! [`ParamValue`]s (float, integer, bool, string or none), so search code can
//! treat any estimator alike, and they hash by content into graph keys.

use std::collections::BTreeMap;
use std::fmt;

use rask_core::key::TokenHasher;
use serde::{Deserialize, Serialize};

/// One hyperparameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    /// A float.
    F64(f64),
    /// An integer.
    I64(i64),
    /// A flag.
    Bool(bool),
    /// A string (a choice among names).
    Str(String),
    /// No value (`None` in scikit-learn, e.g. `max_depth=None`).
    None,
}

impl ParamValue {
    /// Feeds the value into a token: equal values give equal tokens (`-0.0`
    /// hashes as `0.0`, every NaN alike).
    pub fn token_into(&self, h: &mut TokenHasher) {
        match self {
            ParamValue::F64(v) => {
                let v = if *v == 0.0 { 0.0 } else { *v };
                let bits = if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() };
                h.u64(1).u64(bits);
            }
            ParamValue::I64(v) => {
                h.u64(2).u64(*v as u64);
            }
            ParamValue::Bool(v) => {
                h.u64(3).u64(*v as u64);
            }
            ParamValue::Str(s) => {
                h.u64(4).str(s);
            }
            ParamValue::None => {
                h.u64(5);
            }
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::F64(v) => Some(*v),
            ParamValue::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::F64(v) => write!(f, "{v}"),
            ParamValue::I64(v) => write!(f, "{v}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Str(s) => write!(f, "{s:?}"),
            ParamValue::None => write!(f, "None"),
        }
    }
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::F64(v)
    }
}
impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::I64(v)
    }
}
impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::I64(v as i64)
    }
}
impl From<usize> for ParamValue {
    fn from(v: usize) -> Self {
        ParamValue::I64(v as i64)
    }
}
impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Bool(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Str(v.to_string())
    }
}
impl From<String> for ParamValue {
    fn from(v: String) -> Self {
        ParamValue::Str(v)
    }
}
impl<T: Into<ParamValue>> From<Option<T>> for ParamValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(ParamValue::None, Into::into)
    }
}

/// Hyperparameters by name (sorted, so listings and tokens are deterministic).
pub type Params = BTreeMap<String, ParamValue>;

/// The token of a set of parameters.
pub fn params_token_into(params: &Params, h: &mut TokenHasher) {
    h.u64(params.len() as u64);
    for (k, v) in params {
        h.str(k);
        v.token_into(h);
    }
}

/// Rust types usable as hyperparameters.
pub trait ParamType: Sized {
    /// Converts from a [`ParamValue`], or `None` if the kind does not fit.
    fn from_param(v: &ParamValue) -> Option<Self>;
    /// Converts to a [`ParamValue`].
    fn to_param(&self) -> ParamValue;
}

impl ParamType for f64 {
    fn from_param(v: &ParamValue) -> Option<Self> {
        v.as_f64()
    }
    fn to_param(&self) -> ParamValue {
        ParamValue::F64(*self)
    }
}

impl ParamType for i64 {
    fn from_param(v: &ParamValue) -> Option<Self> {
        match v {
            ParamValue::I64(i) => Some(*i),
            ParamValue::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }
    fn to_param(&self) -> ParamValue {
        ParamValue::I64(*self)
    }
}

impl ParamType for bool {
    fn from_param(v: &ParamValue) -> Option<Self> {
        match v {
            ParamValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn to_param(&self) -> ParamValue {
        ParamValue::Bool(*self)
    }
}

impl ParamType for String {
    fn from_param(v: &ParamValue) -> Option<Self> {
        match v {
            ParamValue::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
    fn to_param(&self) -> ParamValue {
        ParamValue::Str(self.clone())
    }
}

impl<T: ParamType> ParamType for Option<T> {
    fn from_param(v: &ParamValue) -> Option<Self> {
        match v {
            ParamValue::None => Some(None),
            other => T::from_param(other).map(Some),
        }
    }
    fn to_param(&self) -> ParamValue {
        self.as_ref().map_or(ParamValue::None, T::to_param)
    }
}

/// Parameters whose values can be checked against their valid ranges
/// (implemented by [`params!`](crate::params!)).
pub trait CheckParams: Clone {
    /// Checks every parameter; the error names the first invalid one.
    fn check_params(&self) -> Result<(), crate::MlError>;
}

/// Parameters that passed their checks. [`Checked::new`] is the only way to
/// make one, and [`FitParams::fit`](crate::FitParams::fit) takes nothing else,
/// so no model is fitted from unchecked values (linfa's `ParamGuard` pattern).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<P>(P);

impl<P: CheckParams> Checked<P> {
    /// Checks `params`.
    pub fn new(params: P) -> Result<Self, crate::MlError> {
        params.check_params()?;
        Ok(Checked(params))
    }
}

impl<P> Checked<P> {
    /// The parameters, unchecked again (to change them).
    pub fn into_inner(self) -> P {
        self.0
    }
}

impl<P> std::ops::Deref for Checked<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.0
    }
}

impl<P: crate::FitParams> Checked<P> {
    /// Fits on `x` (n_samples × n_features) and, for supervised models, `y`
    /// (see [`FitParams::fit`](crate::FitParams::fit)).
    pub fn fit(
        &self,
        x: ndarray::ArrayView2<'_, f64>,
        y: Option<ndarray::ArrayView1<'_, f64>>,
    ) -> Result<P::Fitted, crate::MlError> {
        P::fit(self, x, y)
    }
}

/// Declares a hyperparameter struct: fields with defaults and validity checks,
/// builder methods, a parameter table in the docs, [`CheckParams`], `check`
/// (which returns the [`Checked`] parameters that fitting takes), `get_params`
/// and `set_param` (which validates before it stores).
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        pub struct $Params:ident for $est:literal {
            $(
                $(#[$fmeta:meta])*
                $field:ident ($pname:literal): $ty:ty = $default:expr, valid if |$v:ident| $check:expr, $expect:literal;
            )*
        }
    ) => {
        $(#[$meta])*
        ///
        /// | parameter | default | valid values |
        /// |---|---|---|
        $( #[doc = concat!("| `", $pname, "` | `", stringify!($default), "` | ", $expect, " |")] )*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $Params {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $Params {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        #[allow(clippy::redundant_closure_call)]
        impl $Params {
            $(
                #[doc = concat!("Sets `", $pname, "` (", $expect, ").")]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*

            /// Checks every parameter against its valid range; only checked
            /// parameters can be fitted.
            pub fn check(self) -> Result<$crate::params::Checked<Self>, $crate::MlError> {
                $crate::params::Checked::new(self)
            }

            /// All parameters by name.
            pub fn get_params(&self) -> $crate::Params {
                let mut p = $crate::Params::new();
                $( p.insert($pname.to_string(), $crate::params::ParamType::to_param(&self.$field)); )*
                p
            }

            /// Sets one parameter by name, after checking it.
            pub fn set_param(&mut self, name: &str, value: $crate::ParamValue) -> Result<(), $crate::MlError> {
                match name {
                    $(
                        $pname => {
                            let invalid = || $crate::MlError::InvalidParam {
                                estimator: $est.to_string(),
                                param: $pname.to_string(),
                                value: value.to_string(),
                                expected: $expect.to_string(),
                            };
                            let parsed: $ty = $crate::params::ParamType::from_param(&value).ok_or_else(invalid)?;
                            {
                                let $v = &parsed;
                                if !($check) {
                                    return Err(invalid());
                                }
                            }
                            self.$field = parsed;
                            Ok(())
                        }
                    )*
                    _ => Err($crate::MlError::UnknownParam {
                        estimator: $est.to_string(),
                        param: name.to_string(),
                        known: vec![$($pname.to_string()),*],
                    }),
                }
            }
        }

        impl $crate::params::CheckParams for $Params {
            #[allow(clippy::redundant_closure_call)]
            fn check_params(&self) -> Result<(), $crate::MlError> {
                $(
                    {
                        let $v = &self.$field;
                        if !($check) {
                            return Err($crate::MlError::InvalidParam {
                                estimator: $est.to_string(),
                                param: $pname.to_string(),
                                value: $crate::params::ParamType::to_param(&self.$field).to_string(),
                                expected: $expect.to_string(),
                            });
                        }
                    }
                )*
                Ok(())
            }
        }
    };
}
