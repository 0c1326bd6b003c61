// SPDX-License-Identifier: MIT
//
// Reference model of the book's Node.js app `kubia-pet-peers` (Kubernetes in Action,
// chapter 10), written from the description of the book's app as published in
// docs/contract.md ("The book's apps, for comparison"). It exists only so the benchmark
// has a baseline that behaves like the original:
//
//   * POST: open the data file for writing (truncating it), answer 200 at once, then
//     stream the body into the file; no fsync, no protection against concurrent POSTs.
//   * GET /data: read the whole file synchronously on every request.
//   * GET anything else: resolve the SRV records of kubia.default.svc.cluster.local on
//     every request (no cache), then one plain HTTP GET /data per record to the record's
//     target at the fixed peer port (the SRV port is ignored), no time-out, and write
//     each answer as it arrives (order varies).
//   * No SIGTERM handler.
//
// Bench-only deviations (environment variables; unset = the original's behaviour):
//   KUBIA_REF_PORT        port to listen on and to reach peers at (original: 8080)
//   KUBIA_REF_HOST        address to listen on (original: all addresses); the bench runs
//                         three instances on 127.0.0.1/.2/.3 with one shared port
//   KUBIA_REF_DATA_FILE   data file (original: /var/data/kubia.txt)
//   KUBIA_REF_HOSTNAME    pod name shown in replies (original: os.hostname())
//   KUBIA_REF_DNS_SERVER  host:port of the DNS server used for the SRV lookup *and* for
//                         the peers' A records (original: the system resolver, which in
//                         a pod is cluster DNS; getaddrinfo has no per-call server)
//   KUBIA_REF_MODE        "pet" to behave like the book's first app, kubia-pet (GET of
//                         any path other than /data shows this pod's data only)
'use strict';

const http = require('http');
const os = require('os');
const fs = require('fs');
const dns = require('dns');

const SERVICE = 'kubia.default.svc.cluster.local';
const PORT = Number(process.env.KUBIA_REF_PORT || 8080);
const HOST = process.env.KUBIA_REF_HOST || undefined;
const DATA_FILE = process.env.KUBIA_REF_DATA_FILE || '/var/data/kubia.txt';
const HOSTNAME = process.env.KUBIA_REF_HOSTNAME || os.hostname();
const PET = process.env.KUBIA_REF_MODE === 'pet';

const resolver = new dns.Resolver();
if (process.env.KUBIA_REF_DNS_SERVER) {
	resolver.setServers([process.env.KUBIA_REF_DNS_SERVER]);
}

// Peer names are resolved through the same resolver as the SRV lookup, fresh every time
// (getaddrinfo in the original does not cache either). Node 20 may ask for all addresses.
function lookupPeer(name, options, callback) {
	resolver.resolve4(name, (err, addresses) => {
		if (err) {
			callback(err);
		} else if (options && options.all) {
			callback(null, addresses.map((address) => ({ address, family: 4 })));
		} else {
			callback(null, addresses[0], 4);
		}
	});
}

function readData() {
	try {
		return fs.readFileSync(DATA_FILE);
	} catch (e) {
		return 'No data posted yet';
	}
}

function clusterView(response) {
	response.write(`You've hit ${HOSTNAME}\n`);
	response.write('Data stored in the cluster:\n');
	resolver.resolveSrv(SERVICE, (err, records) => {
		if (err) {
			response.end(`Could not look up DNS SRV records: ${err}\n`);
			return;
		}
		if (records.length === 0) {
			response.end('No peers discovered.\n');
			return;
		}
		let pending = records.length;
		const finish = () => {
			if (--pending === 0) {
				response.end();
			}
		};
		for (const record of records) {
			const options = { host: record.name, port: PORT, path: '/data', lookup: lookupPeer };
			http.get(options, (peer) => {
				let body = '';
				peer.setEncoding('utf8');
				peer.on('data', (chunk) => {
					body += chunk;
				});
				peer.on('end', () => {
					response.write(`- ${record.name}: ${body}\n`);
					finish();
				});
			}).on('error', (e) => {
				response.write(`- ${record.name}: Error: ${e.message}\n`);
				finish();
			});
		}
	});
}

const server = http.createServer((request, response) => {
	if (request.method === 'POST') {
		const file = fs.createWriteStream(DATA_FILE);
		request.pipe(file);
		response.writeHead(200);
		response.end(`Data stored on pod ${HOSTNAME}\n`);
		return;
	}
	response.writeHead(200);
	if (request.url === '/data') {
		response.end(readData());
	} else if (PET) {
		response.end(`You've hit ${HOSTNAME}\nData stored on this pod: ${readData()}\n`);
	} else {
		clusterView(response);
	}
});

server.listen(PORT, HOST, () => {
	console.log(`kubia reference model listening on ${HOST || '*'}:${PORT}`);
});
