include!("integrations/xgboost_lib.rs");

fn main() {
    link_xgboost();
}
