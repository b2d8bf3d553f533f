/** `doe-emu certs …`: generate SPDM certificate chains libspdm accepts, and show chain files. */
import { X509Certificate } from "node:crypto";
import type { Argv } from "yargs";
import { loadCertChainFile, writeChainFiles } from "../crypto/cert-files.js";
import { generateCertChain } from "../crypto/certgen.js";
import { ASYM, type AsymAlgo, HASH, type HashAlgo } from "../crypto/suites.js";
import { CertChainError, certLabel, describeKey, verifyCertChain } from "../crypto/verify-chain.js";
import { loadX509, type X509 } from "../crypto/x509.js";
import { run } from "./common.js";

// Algorithms as spdm-emu spells them (ECDSA_P384, SHA3_256); "ecdsa-p384" is taken too.
const ASYM_FLAGS = Object.keys(ASYM) as AsymAlgo[];
const HASH_FLAGS = Object.keys(HASH) as HashAlgo[];
const normalize = (s: unknown) => String(s).toUpperCase().replace(/-/g, "_");

interface GenerateArgs {
  asym: string;
  hash?: string;
  out: string;
  name: string;
  intermediates: number;
  "common-name"?: string;
  role: "responder" | "requester";
}

async function runGenerate(argv: GenerateArgs): Promise<void> {
  // yargs has checked both against their choices.
  const asym = argv.asym as AsymAlgo;
  const chain = await generateCertChain({
    asym,
    hash: argv.hash as HashAlgo | undefined,
    intermediates: argv.intermediates,
    commonName: argv["common-name"],
    role: argv.role,
  });
  await verifyCertChain(chain.certsDer, chain.rootDer, { asym, role: argv.role });
  const files = writeChainFiles(argv.out, argv.name, chain);
  console.log(`${asym} chain of ${chain.certsDer.length} certificates (root first):`);
  for (const path of Object.values(files)) console.log(`  wrote ${path}`);
  console.log(`root SHA-256 fingerprint ${new X509Certificate(chain.rootDer).fingerprint256}`);
}

/** Validity as ISO dates and the signature algorithm, from @peculiar/x509's view of the certificate. */
function details(x509: X509, der: Uint8Array): { validity: string; signature: string } {
  try {
    const c = new x509.X509Certificate(Uint8Array.from(der));
    const alg = c.signatureAlgorithm as { name?: string; hash?: { name?: string } | string };
    const h = typeof alg.hash === "string" ? alg.hash : alg.hash?.name;
    return {
      validity: `${c.notBefore.toISOString()} .. ${c.notAfter.toISOString()}`,
      signature: h ? `${alg.name} with ${h}` : (alg.name ?? "unknown"),
    };
  } catch {
    return { validity: "?", signature: "unknown" };
  }
}

interface ShowArgs {
  file: string;
  root?: string;
  asym?: string;
}

async function runShow(argv: ShowArgs): Promise<void> {
  const certsDer = loadCertChainFile(argv.file, { checkChain: false });
  const certs = certsDer.map((d) => new X509Certificate(d));
  const x509 = await loadX509();
  console.log(`${argv.file}: ${certs.length} certificate${certs.length === 1 ? "" : "s"}, root first`);
  certs.forEach((c, i) => {
    const d = details(x509, certsDer[i]!);
    console.log(`${certLabel(certs, i)}`);
    console.log(`  subject    ${c.subject.replace(/\n/g, ", ")}`);
    console.log(`  issuer     ${c.issuer.replace(/\n/g, ", ")}`);
    console.log(`  serial     ${c.serialNumber}`);
    console.log(`  validity   ${d.validity}`);
    console.log(`  key        ${describeKey(c.publicKey)}${c.ca ? " (CA)" : ""}`);
    console.log(`  signature  ${d.signature}`);
    console.log(`  sha256     ${c.fingerprint256}`);
  });
  const rootDer = argv.root ? loadCertChainFile(argv.root, { checkChain: false })[0] : undefined;
  try {
    await verifyCertChain(certsDer, rootDer, { asym: argv.asym as AsymAlgo | undefined });
    console.log(`verify: OK${rootDer ? ` against ${argv.root}` : " (chain consistent; no --root to trust)"}`);
  } catch (e) {
    if (!(e instanceof CertChainError)) throw e;
    console.log(`verify: FAILED: ${e.message}`);
    process.exitCode = 1;
  }
}

export const certsCommand = {
  command: "certs",
  describe: "Generate and inspect SPDM certificate chains (root CA → intermediate → device leaf)",
  builder: (y: Argv) =>
    y
      .command(
        "generate",
        "Generate a chain and leaf key libspdm's requester accepts, written as DER, PEM and the root alone",
        (y2) =>
          y2
            .option("asym", {
              type: "string",
              choices: ASYM_FLAGS,
              coerce: normalize,
              demandOption: true,
              describe: "Key algorithm (spdm-emu names)",
            })
            .option("hash", {
              type: "string",
              choices: HASH_FLAGS,
              coerce: normalize,
              describe: "Certificate signature hash (default by key size; SHA3 maps to SHA-2 of its size)",
            })
            .option("out", {
              type: "string",
              demandOption: true,
              describe: "Directory to write into (created)",
            })
            .option("name", { type: "string", default: "responder", describe: "File name stem" })
            .option("intermediates", { type: "number", default: 1, describe: "Intermediate CAs (0..8)" })
            .option("common-name", {
              type: "string",
              describe: "Subject CN prefix (default: doe-emu <asym>)",
            })
            .option("role", {
              choices: ["responder", "requester"] as const,
              default: "responder" as const,
              describe: "DMTF EKU OID on the leaf",
            })
            .example(
              "$0 certs generate --asym ECDSA_P384 --out certs",
              "certs/responder.certchain.der, .key.pem, …",
            ),
        run(runGenerate),
      )
      .command(
        "show <file>",
        "Print each certificate of a chain file (PEM, concatenated DER or SPDM chain) and verify the chain",
        (y2) =>
          y2
            .positional("file", { type: "string", demandOption: true, describe: "Chain file" })
            .option("root", { type: "string", describe: "Trust root certificate file (PEM or DER)" })
            .option("asym", {
              type: "string",
              choices: ASYM_FLAGS,
              coerce: normalize,
              describe: "Check the leaf key is of this algorithm",
            }),
        run(runShow),
      )
      .demandCommand(1, "name a certs command"),
  handler: () => undefined,
};
