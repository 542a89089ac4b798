# Dummy values for the environment variables the example configs reference (env:NAME), so
# that CI can validate every example:
#
#   . config/examples/check-env.sh
#   gatehouse check-config config/examples/*.toml
#
# Never use these values for a real deployment.
export LDAP_BIND_PASSWORD=dummy                                             # ldap.toml
export OKTA_CLIENT_SECRET=dummy                                             # oidc.toml
export GOOGLE_CLIENT_SECRET=dummy                                           # oidc.toml
export GATEHOUSE_DATABASE_URL=postgres://gatehouse:dummy@localhost:5432/gatehouse  # replicas-postgres.toml
