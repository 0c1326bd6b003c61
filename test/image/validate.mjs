// Checks Kubernetes manifests against the schemas of the Kubernetes API, without a
// cluster: every object of every YAML document (the items of a `kind: List` one by one)
// is validated by the kubernetes-models class of its apiVersion and kind.
//
//     node validate.mjs [FILE...]        (no FILE, or "-": standard input)
//
// Prints "valid: <object>" for each object that passes and "invalid: <object>: <why>"
// for each that does not, naming the file, the document and the object. Exit status:
// 0 when every object is valid, 1 when one is not (or a document is not YAML, or a kind
// is unknown, or there is no object at all), 2 when a file cannot be read.
//
// The packages are pinned in package.json and package-lock.json beside this file. Node
// resolves them from the node_modules directory next to the script, so install them
// outside the source tree and copy the script there:
//
//     dir=$(mktemp -d)
//     cp test/image/package.json test/image/package-lock.json test/image/validate.mjs "$dir"
//     npm ci --prefix "$dir" --ignore-scripts
//     kubectl kustomize k8s/ | node "$dir/validate.mjs"
//
// kubernetes-models is held at 4.5.1 (the API of Kubernetes 1.33) because the 5.x series
// needs Node 22, and Debian bookworm's Node is 18. Its schemas check types, enums,
// formats and required fields; they do not reject fields they do not know, so a
// misspelt field passes here: test_manifests.py checks the fields kubia depends on by
// name.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// An API group is a DNS subdomain; the version is v1, v2beta1 and the like. Checking
// both before building a module path keeps the import inside kubernetes-models.
const LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const API_VERSION = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$`);
const KIND = /^[A-Z][A-Za-z0-9]*$/;
// What the import of a model that kubernetes-models does not have fails with.
const NOT_FOUND = new Set(["ERR_PACKAGE_PATH_NOT_EXPORTED", "ERR_MODULE_NOT_FOUND"]);

const models = new Map();

async function loadModel(apiVersion, kind) {
	const key = `${apiVersion} ${kind}`;
	if (!models.has(key)) {
		let model = null;
		try {
			const mod = await import(`kubernetes-models/${apiVersion}/${kind}`);
			const cls = mod[kind];
			const matches = cls?.apiVersion === apiVersion && cls?.kind === kind;
			if (typeof cls === "function" && matches) {
				model = cls;
			}
		} catch (err) {
			if (!NOT_FOUND.has(err.code)) {
				throw err;
			}
		}
		models.set(key, model);
	}
	return models.get(key);
}

function isObject(v) {
	return v !== null && typeof v === "object" && !Array.isArray(v);
}

function describe(where, obj) {
	if (!isObject(obj) || obj instanceof Error) {
		return where;
	}
	const meta = isObject(obj.metadata) ? obj.metadata : {};
	const name = meta.name ?? (meta.generateName ? `${meta.generateName}*` : "(no name)");
	const ns = meta.namespace ? `${meta.namespace}/` : "";
	const kind = obj.kind ?? "(no kind)";
	return `${where}: ${kind} ${ns}${name} (${obj.apiVersion ?? "no apiVersion"})`;
}

// Returns the reason obj is not a valid object, or null.
async function check(obj) {
	if (!isObject(obj)) {
		return "not a mapping";
	}
	const { apiVersion, kind } = obj;
	if (typeof apiVersion !== "string" || !API_VERSION.test(apiVersion)) {
		return `apiVersion ${JSON.stringify(apiVersion)} is missing or malformed`;
	}
	if (typeof kind !== "string" || !KIND.test(kind)) {
		return `kind ${JSON.stringify(kind)} is missing or malformed`;
	}
	const Model = await loadModel(apiVersion, kind);
	if (Model === null) {
		return `unknown kind ${kind} in ${apiVersion}: not a Kubernetes API object`;
	}
	// The API server refuses an object it cannot name; the schemas leave that out.
	if (!isObject(obj.metadata) || !(obj.metadata.name || obj.metadata.generateName)) {
		return "metadata.name is missing";
	}
	try {
		new Model(obj).validate();
	} catch (err) {
		return `schema violation: ${err.message}`;
	}
	return null;
}

// Yields [where, object] for every object of one source, the items of a List one by
// one; a document that is not YAML, or a List without items, yields [where, Error].
function* objects(source, text) {
	// YAML 1.1, as Kubernetes reads manifests: "yes" and "on" are booleans there.
	const docs = parseAllDocuments(text, { version: "1.1", prettyErrors: true });
	// parseAllDocuments returns an EmptyStream, not an array, for an empty input.
	if (!Array.isArray(docs)) {
		return;
	}
	for (const [i, doc] of docs.entries()) {
		const where = `${source} document ${i + 1}`;
		const problems = [...doc.errors, ...doc.warnings];
		if (problems.length > 0) {
			// The first line of each says what and where; the rest quotes the source.
			const first = problems.map((p) => p.message.split("\n")[0]);
			yield [where, new Error(first.join("; "))];
			continue;
		}
		const obj = doc.toJS({ maxAliasCount: 100 });
		if (obj === null || obj === undefined) {
			continue; // an empty document, e.g. after a trailing "---"
		}
		if (isObject(obj) && obj.kind === "List" && obj.apiVersion === "v1") {
			if (!Array.isArray(obj.items)) {
				yield [where, new Error("a List without items")];
				continue;
			}
			for (const [j, item] of obj.items.entries()) {
				yield [`${where} item ${j + 1}`, item];
			}
			continue;
		}
		yield [where, obj];
	}
}

async function main(args) {
	const sources = args.length > 0 ? args : ["-"];
	let valid = 0;
	let invalid = 0;
	for (const source of sources) {
		let text;
		try {
			text = readFileSync(source === "-" ? 0 : source, "utf8");
		} catch (err) {
			const what = source === "-" ? "standard input" : source;
			console.error(`validate: cannot read ${what}: ${err.message}`);
			return 2;
		}
		const name = source === "-" ? "<stdin>" : source;
		for (const [where, obj] of objects(name, text)) {
			const bad = obj instanceof Error;
			const why = bad ? `not valid YAML: ${obj.message}` : await check(obj);
			if (why === null) {
				console.log(`valid: ${describe(where, obj)}`);
				valid++;
			} else {
				console.error(`invalid: ${describe(where, obj)}: ${why}`);
				invalid++;
			}
		}
	}
	if (valid + invalid === 0) {
		const names = sources.map((s) => (s === "-" ? "standard input" : s));
		console.error(`invalid: no Kubernetes object in ${names.join(", ")}`);
		return 1;
	}
	return invalid > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
