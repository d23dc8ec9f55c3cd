// Times Nodemailer's MailComposer building the benchmark messages.
//
// Usage: node bench/node/compose.js FIXTURE_DIR SCENARIO PACKAGE ITERATIONS
//   SCENARIO: "a" (text + html) or "b" (text + html + 100 KB attachment)
//   PACKAGE:  "nodemailer6" or "nodemailer10" (npm aliases installed into bench/)
// Prints one JSON line: {"package", "scenario", "iterations", "seconds", "bytes"}.
'use strict';

const fs = require('fs');
const path = require('path');

const [fixtureDir, scenario, pkg, iterationsArg] = process.argv.slice(2);
const iterations = Number(iterationsArg || 1000);
// resolved through the npm alias from bench/node_modules ("nodemailer10/lib/mail-composer"),
// which also honours Nodemailer 10's package "exports" map
const loaded = require(`${pkg}/lib/mail-composer`);
const MailComposer = loaded.default || loaded;

const spec = JSON.parse(fs.readFileSync(path.join(fixtureDir, 'message.json'), 'utf8'));
const options = {
    from: spec.from,
    to: spec.to,
    subject: spec.subject,
    text: spec.text,
    html: spec.html
};
if (scenario === 'b') {
    options.attachments = [
        { filename: spec.attachment_name, content: fs.readFileSync(path.join(fixtureDir, 'attachment.bin')) }
    ];
}

function buildOnce() {
    return new Promise((resolve, reject) => {
        new MailComposer(options).compile().build((err, message) => (err ? reject(err) : resolve(message)));
    });
}

async function main() {
    let bytes = 0;
    for (let i = 0; i < Math.min(200, iterations); i++) {
        bytes = (await buildOnce()).length; // warm-up (JIT)
    }
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) {
        await buildOnce();
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    process.stdout.write(JSON.stringify({ package: pkg, scenario, iterations, seconds, bytes }) + '\n');
}

main().catch(err => {
    process.stderr.write(String((err && err.stack) || err) + '\n');
    process.exit(1);
});
