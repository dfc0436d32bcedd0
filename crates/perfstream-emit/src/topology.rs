//! The simulated estate: services, their instances, endpoints and queries, drawn once from the
//! seed.

use perfstream_events::QueryType;
use rand::Rng;
use rand::rngs::StdRng;

use crate::scenario::Scenario;

const SERVICE_NAMES: [&str; 8] = [
    "campaign-api",
    "checkout",
    "billing",
    "search",
    "auth",
    "inventory",
    "notify",
    "reports",
];

const ROUTES: [(&str, &str); 12] = [
    ("/campaigns/{id}", "GET"),
    ("/campaigns", "GET"),
    ("/campaigns", "POST"),
    ("/campaigns/{id}", "PUT"),
    ("/users/{id}", "GET"),
    ("/orders/{id}/items", "GET"),
    ("/search", "GET"),
    ("/login", "POST"),
    ("/reports/{id}", "GET"),
    ("/campaigns/{id}", "DELETE"),
    ("/health", "GET"),
    ("/domains/generate", "POST"),
];

const TABLES: [&str; 8] = [
    "campaigns",
    "users",
    "orders",
    "order_items",
    "domains",
    "sessions",
    "reports",
    "audit_log",
];

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub route: String,
    pub method: &'static str,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub hash: String,
    pub query_type: QueryType,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub memory_limit_bytes: i64,
    pub pool_max: i32,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub instances: Vec<Instance>,
    /// In popularity order: index 0 is the most popular (Zipf rank 1).
    pub endpoints: Vec<Endpoint>,
    /// In popularity order.
    pub queries: Vec<Query>,
}

pub fn build(s: &Scenario, rng: &mut StdRng) -> Vec<Service> {
    (0..s.services as usize)
        .map(|si| {
            let base = SERVICE_NAMES[si % SERVICE_NAMES.len()];
            let name = if si < SERVICE_NAMES.len() {
                base.to_string()
            } else {
                format!("{base}-{}", si / SERVICE_NAMES.len())
            };
            let instances = (0..s.instances)
                .map(|ii| Instance {
                    name: format!("{name}-{ii}"),
                    memory_limit_bytes: [1i64, 2, 4][rng.random_range(0..3)] << 30,
                    pool_max: [20, 32, 50][rng.random_range(0..3)],
                })
                .collect();
            let endpoints = (0..s.endpoints as usize)
                .map(|ei| {
                    let (route, method) = ROUTES[ei % ROUTES.len()];
                    let route = if ei < ROUTES.len() {
                        route.to_string()
                    } else {
                        format!("/v{}{route}", ei / ROUTES.len() + 1)
                    };
                    Endpoint { route, method }
                })
                .collect();
            let queries = (0..s.query_hashes as usize)
                .map(|qi| {
                    let query_type = match rng.random_range(0..100) {
                        0..60 => QueryType::Select,
                        60..75 => QueryType::Insert,
                        75..90 => QueryType::Update,
                        90..97 => QueryType::Delete,
                        _ => QueryType::Other,
                    };
                    let table = TABLES[rng.random_range(0..TABLES.len())];
                    let text = match query_type {
                        QueryType::Select => {
                            format!("SELECT * FROM {table} WHERE id = $1 AND tenant = $2 /*{qi}*/")
                        }
                        QueryType::Insert => {
                            format!("INSERT INTO {table} VALUES ($1, $2) /*{qi}*/")
                        }
                        QueryType::Update => {
                            format!("UPDATE {table} SET state = $1 WHERE id = $2 /*{qi}*/")
                        }
                        QueryType::Delete => format!("DELETE FROM {table} WHERE id = $1 /*{qi}*/"),
                        QueryType::Other => format!("VACUUM {table} /*{qi}*/"),
                    };
                    Query {
                        hash: format!("{:016x}", rng.random::<u64>()),
                        query_type,
                        text,
                    }
                })
                .collect();
            Service {
                name,
                instances,
                endpoints,
                queries,
            }
        })
        .collect()
}
