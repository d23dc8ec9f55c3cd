// Sends the benchmark message through Nodemailer's SES transport to a local SES endpoint.
//
// Usage: node bench/node/send_nodemailer.js '<JSON config>'
//   package:     "nodemailer10" (SESv2: { sesClient, SendEmailCommand } from @aws-sdk/client-sesv2)
//                "nodemailer6"  (v1: { ses, aws } with @aws-sdk/client-ses SendRawEmailCommand,
//                                maxConnections and sendingRate)
//   url:         the endpoint URL
//   message:     path to a JSON file {from, to, subject, text, html}
//   concurrency: messages in flight (worker loops awaiting sendMail; Nodemailer 6 also gets
//                maxConnections = concurrency)
//   mode:        "duration": warm up for `warmup` s, then send flat out for `duration` s
//                "count":    hand `count` messages to sendMail at once (the transport queues
//                            them: Nodemailer 6's sendingRate spaces them)
//   sendingRate: Nodemailer 6 only (messages per second)
// Prints one JSON line: {"sent", "wall", "cpu", "errors"} (cpu: process.cpuUsage() delta of
// the measured phase, seconds).
'use strict';

const fs = require('fs');
const http = require('http');

const config = JSON.parse(process.argv[2]);
const spec = JSON.parse(fs.readFileSync(config.message, 'utf8'));
const concurrency = Number(config.concurrency || 1);
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
// The SDK's default agent keeps connections alive with up to 50 sockets; size it to the
// concurrency like the Python contenders' pools.
const requestHandler = { httpAgent: new http.Agent({ keepAlive: true, maxSockets: Math.max(1, concurrency) }) };
const clientOptions = { region: 'us-east-1', endpoint: config.url, credentials, maxAttempts: 1, requestHandler };

function load(name) {
    const mod = require(name);
    return mod.default || mod;
}

function createTransport() {
    const nodemailer = load(config.package);
    if (config.package === 'nodemailer6') {
        const aws = require('@aws-sdk/client-ses');
        const ses = new aws.SESClient(clientOptions);
        const options = { SES: { ses, aws }, maxConnections: concurrency };
        if (config.sendingRate) {
            options.sendingRate = Number(config.sendingRate);
        }
        return nodemailer.createTransport(options);
    }
    const { SESv2Client, SendEmailCommand } = require('@aws-sdk/client-sesv2');
    const sesClient = new SESv2Client(clientOptions);
    return nodemailer.createTransport({ SES: { sesClient, SendEmailCommand } });
}

function mail() {
    return { from: spec.from, to: spec.to, subject: spec.subject, text: spec.text, html: spec.html };
}

function seconds(cpu) {
    return (cpu.user + cpu.system) / 1e6;
}

async function loopUntil(transporter, until, counts) {
    while (performance.now() < until) {
        try {
            await transporter.sendMail(mail());
            counts.sent++;
        } catch (err) {
            counts.errors++;
            if (counts.errors === 1) {
                process.stderr.write(String((err && err.stack) || err) + '\n');
            }
        }
    }
}

async function runDuration(transporter) {
    const warm = { sent: 0, errors: 0 };
    const warmUntil = performance.now() + Number(config.warmup) * 1000;
    await Promise.all(Array.from({ length: concurrency }, () => loopUntil(transporter, warmUntil, warm)));
    const counts = { sent: 0, errors: 0 };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const until = t0 + Number(config.duration) * 1000;
    await Promise.all(Array.from({ length: concurrency }, () => loopUntil(transporter, until, counts)));
    const wall = (performance.now() - t0) / 1000;
    return { ...counts, wall, cpu: seconds(process.cpuUsage(cpu0)) };
}

async function runCount(transporter) {
    const counts = { sent: 0, errors: 0 };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const jobs = [];
    for (let i = 0; i < Number(config.count); i++) {
        jobs.push(
            transporter.sendMail(mail()).then(
                () => counts.sent++,
                () => counts.errors++
            )
        );
    }
    await Promise.all(jobs);
    const wall = (performance.now() - t0) / 1000;
    return { ...counts, wall, cpu: seconds(process.cpuUsage(cpu0)) };
}

async function main() {
    // Nodemailer 6 unrefs its rate timer: with every message waiting on it, nothing else
    // would keep Node running and the process would exit with mail unsent.
    const keepAlive = setInterval(() => {}, 1000);
    const transporter = createTransport();
    const result = config.mode === 'count' ? await runCount(transporter) : await runDuration(transporter);
    clearInterval(keepAlive);
    transporter.close();
    process.stdout.write(JSON.stringify({ package: config.package, ...result }) + '\n');
}

main().catch(err => {
    process.stderr.write(String((err && err.stack) || err) + '\n');
    process.exit(1);
});
