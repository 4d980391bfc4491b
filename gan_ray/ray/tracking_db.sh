#!/usr/bin/env bash
# The store behind the head's `mlflow server`, set up on the head by cluster.yaml; writes its
# SQLAlchemy URI to ~/mlflow/tracking_db, which the server start and the backups read.
#
#   tracking_db.sh            PostgreSQL on the head: Debian's package, its data on the head's disk
#                             (/var/lib/postgresql), listening on localhost and the private network
#   tracking_db.sh URI        a managed database (RDS): URI (or $GAN_RAY_TRACKING_DB) without its password, which goes in the
#                             head's ~/.pgpass (libpq reads it; never in the repository or a command line)
set -euo pipefail
folder="$HOME/mlflow"
mkdir -p "$folder"
# Every client of the store is on this node or the private network (pg_dump for backups included).
command -v pg_dump > /dev/null || { sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-client; }
managed="${1:-${GAN_RAY_TRACKING_DB:-}}"
if [ -n "$managed" ]; then
    echo "$managed" > "$folder/tracking_db"
    exit 0
fi

command -v pg_ctlcluster > /dev/null || { sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
conf="/etc/postgresql/$version/main"
# The password is made on the head, once, and kept in ~/.pgpass (mode 600).
if ! grep -q ':mlflow:mlflow:' ~/.pgpass 2> /dev/null; then
    (umask 077 && echo "*:5432:mlflow:mlflow:$(openssl rand -hex 24)" >> ~/.pgpass)
fi
password=$(grep ':mlflow:mlflow:' ~/.pgpass | head -n 1 | cut -d: -f5)
private_ip=$(hostname -I | awk '{print $1}')
# Connections: 8 server workers x (pool 10 + overflow 20) = 240, with room for backups and psql.
sudo sed -i -E "s/^#?listen_addresses *=.*/listen_addresses = 'localhost,$private_ip'/" "$conf/postgresql.conf"
sudo sed -i -E "s/^#?max_connections *=.*/max_connections = 300/" "$conf/postgresql.conf"
sudo grep -q 'gan_ray' "$conf/pg_hba.conf" ||
    echo "host mlflow mlflow samenet scram-sha-256  # gan_ray: the cluster's private network" | sudo tee -a "$conf/pg_hba.conf" > /dev/null
sudo systemctl restart postgresql
# Through stdin, not arguments: the password stays out of the process list.
sudo -u postgres psql -q -v ON_ERROR_STOP=1 <<SQL
SELECT 'CREATE ROLE mlflow LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlflow')\gexec
ALTER ROLE mlflow PASSWORD '$password';
SELECT 'CREATE DATABASE mlflow OWNER mlflow' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'mlflow')\gexec
SQL
echo "postgresql://mlflow@127.0.0.1:5432/mlflow" > "$folder/tracking_db"
