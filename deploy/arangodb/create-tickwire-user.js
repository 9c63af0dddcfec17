// tickwire's ArangoDB user and database, created at the first start of the arangodb service of
// docker-compose.yml: the arangodb image runs the files of /docker-entrypoint-initdb.d once, as root, when its
// data directory is new. The user gets read/write on its database only (not root, no _system access); tickwire
// connects as it (TICKWIRE_ARANGO_USERNAME, TICKWIRE_ARANGO_DATABASE). The password is the Docker secret
// tickwire_arango_password (ARANGO_PASSWORD in .env; tickwire reads the same file), never on a command line.
// On a data directory that already exists, run it by hand:
//   docker compose exec arangodb arangosh --javascript.execute /docker-entrypoint-initdb.d/create-tickwire-user.js
// (arangosh asks for root's password).
'use strict';
const fs = require('fs');
const users = require('@arangodb/users');

const database = 'tickwire';
const user = 'tickwire';
const password = fs.read('/run/secrets/tickwire_arango_password').trim();
if (!password) {
  throw new Error('the tickwire_arango_password secret is empty: set ARANGO_PASSWORD in .env');
}
if (!db._databases().includes(database)) {
  db._createDatabase(database);
}
if (users.exists(user)) {
  users.update(user, password, true);
} else {
  users.save(user, password, true);
}
users.grantDatabase(user, database, 'rw');
users.grantCollection(user, database, '*', 'rw');
print('create-tickwire-user: ' + user + ' has read/write on database ' + database);
