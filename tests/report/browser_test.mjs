// Opens report.html pages written by traindx's renderer in headless Chromium (Debian's, driven by playwright-core;
// no browser is ever downloaded) and checks what a person would see: every chart present in the report JSON has
// a canvas with data drawn on it, charts without data say so, the tables match the JSON, nothing is fetched from
// anywhere, and the page logs no errors. Saves a full-page screenshot as a test artifact.
//
// node browser_test.mjs --chromium /usr/bin/chromium --web WEB_DIR --report REPORT.json --page report.html
//                       --screenshot report.png [--empty-page empty/report.html]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['chromium', 'web', 'report', 'page', 'screenshot']) {
    if (!args[required]) throw new Error(`--${required} is required`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
// playwright-core is a dev dependency of web/, not of this folder.
const { chromium } = createRequire(path.join(args.web, 'package.json'))('playwright-core');

let passed = 0;
let failed = 0;
function check(ok, what) {
  if (ok) {
    passed += 1;
    console.log(`ok - ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${what}`);
  }
}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const hasAny = (a) => Array.isArray(a) && a.some(isNum);
const nonEmpty = (a) => Array.isArray(a) && a.length > 0;

/** The canvases a report should get, decided from the JSON alone (independently of render_html.cpp). */
function expectedCharts(report) {
  const c = report.charts || {};
  const ids = [];
  if (c.loss_curve && (hasAny(c.loss_curve.train_loss) || hasAny(c.loss_curve.val_loss))) ids.push('loss');
  if (c.loss_curve && (hasAny(c.loss_curve.train_accuracy) || hasAny(c.loss_curve.val_accuracy))) ids.push('accuracy');
  if (c.lr_sweep && hasAny(c.lr_sweep.losses)) ids.push('lr_sweep');
  if (c.grad_norm_heatmap && nonEmpty(c.grad_norm_heatmap.layers) && nonEmpty(c.grad_norm_heatmap.steps)) {
    ids.push('grad_norm_heatmap');
  }
  const a = c.activation_stats;
  if (a && nonEmpty(a.layers)) ids.push('activation_mean_std');
  if (a && nonEmpty(a.layers) && (hasAny(a.zero_fraction) || hasAny(a.saturated_fraction))) {
    ids.push('activation_fractions');
  }
  if (c.confusion_matrix && nonEmpty(c.confusion_matrix.labels)) ids.push('confusion_matrix');
  if (c.ladder && nonEmpty(c.ladder.variants)) ids.push('ladder');
  return ids.sort();
}

/** Loads a page and collects everything that went wrong on the way. */
async function openPage(context, file) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  await page.waitForFunction(() => document.documentElement.dataset.rendered === 'true', null, { timeout: 20000 });
  return { page, problems };
}

// Per canvas: what Chart.js says it plots, and how many strongly coloured pixels lie inside the plot area.
// Axes, grid lines and text are grey, the data are coloured: coloured pixels mean the data were drawn.
async function inspectCanvases(page) {
  return page.evaluate(() => {
    const out = {};
    for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
      const id = canvas.dataset.chart;
      const chart = Chart.getChart(canvas);
      const info = { points: (window.traindxReport.charts[id] || {}).points || 0, coloured: 0, width: canvas.width };
      if (chart) {
        const ratio = canvas.width / canvas.clientWidth;
        const area = chart.chartArea;
        const x = Math.floor(area.left * ratio);
        const y = Math.floor(area.top * ratio);
        const w = Math.max(1, Math.floor((area.right - area.left) * ratio));
        const h = Math.max(1, Math.floor((area.bottom - area.top) * ratio));
        const pixels = canvas.getContext('2d').getImageData(x, y, w, h).data;
        for (let i = 0; i < pixels.length; i += 4) {
          const r = pixels[i];
          const g = pixels[i + 1];
          const b = pixels[i + 2];
          if (pixels[i + 3] > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 40) info.coloured += 1;
        }
      }
      out[id] = info;
    }
    return out;
  });
}

async function checkSamplePage(context, report) {
  const { page, problems } = await openPage(context, args.page);
  const expected = expectedCharts(report);
  const present = await page.$$eval('canvas[data-chart]', (list) => list.map((c) => c.dataset.chart).sort());
  check(JSON.stringify(present) === JSON.stringify(expected),
    `canvases for exactly the charts with data: ${present.join(', ')}`);
  check(expected.length === 8, 'the sample report exercises all 8 charts');

  const canvases = await inspectCanvases(page);
  for (const id of expected) {
    const info = canvases[id] || { points: 0, coloured: 0 };
    check(info.points > 0, `${id}: Chart.js plots ${info.points} values`);
    check(info.coloured >= 200, `${id}: ${info.coloured} coloured pixels drawn in the plot area`);
  }
  const emptyNotes = await page.$$eval('[data-empty-chart]', (list) => list.length);
  check(emptyNotes === 0, 'no chart of the sample says it has no data');

  const findings = await page.$$eval('article.finding', (list) => list.map((a) => a.className));
  check(findings.length === report.findings.length,
    `${findings.length} finding cards for ${report.findings.length} findings`);
  const rank = (cls) => (cls.includes('finding-critical') ? 2 : cls.includes('finding-warning') ? 1 : 0);
  check(findings.every((cls, i) => i === 0 || rank(findings[i - 1]) >= rank(cls)),
    'findings are ranked critical first');
  const checkRows = await page.$$eval('tr[data-check]', (list) => list.length);
  check(checkRows === report.checks.length, `${checkRows} rows in the checks table`);
  const gradRows = await page.$$eval('#gradient-check-table tbody tr', (list) => list.length);
  check(gradRows === report.charts.gradient_check.rows.length, `${gradRows} rows in the gradient-check table`);
  const failedRows = await page.$$eval('#gradient-check-table tr.failed', (list) => list.length);
  check(failedRows === report.charts.gradient_check.rows.filter((r) => !r.passed).length,
    'failing gradient checks are highlighted');
  const title = await page.title();
  check(title === report.title, `the page title is the report's title (${title})`);
  // The sample's config carries "</script>": it must show as text, not end the data early.
  const config = await page.$eval('#run pre', (pre) => pre.textContent);
  check(config === report.config_toml, 'the configuration (with "</script>" in it) shows verbatim');

  await page.screenshot({ path: args.screenshot, fullPage: true });
  check(true, `screenshot saved to ${args.screenshot}`);
  const listed = problems.length ? `: ${problems.join(' | ')}` : '';
  check(problems.length === 0, `no console errors, page errors or failed requests${listed}`);
  await page.close();
}

async function checkEmptyPage(context) {
  const { page, problems } = await openPage(context, args['empty-page']);
  const canvases = await page.$$eval('canvas', (list) => list.length);
  check(canvases === 0, 'a report without chart data draws no canvas');
  const notes = await page.$$eval('[data-empty-chart]', (list) => list.map((p) => p.textContent));
  check(notes.length === 8 && notes.every((t) => t.startsWith('No ')), `${notes.length} charts say they have no data`);
  check(problems.length === 0, `empty report: no console errors${problems.length ? `: ${problems.join(' | ')}` : ''}`);
  await page.close();
}

const report = JSON.parse(readFileSync(args.report, 'utf8'));
const userDataDir = mkdtempSync(path.join(tmpdir(), 'traindx-chromium-'));
const requests = [];
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.chromium,
    headless: true,
    // Without the background-networking switches Chromium phones home at start; this machine has no network
    // for it, and the test must see only the page's own requests.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
  });
  context.on('request', (request) => requests.push(request.url()));
  await checkSamplePage(context, report);
  if (args['empty-page']) await checkEmptyPage(context);
  const outside = requests.filter((url) => !url.startsWith('file://'));
  check(outside.length === 0, `no network requests outside file://${outside.length ? `: ${outside.join(', ')}` : ''}`);
} catch (error) {
  check(false, `browser run: ${error.stack || error}`);
} finally {
  if (context) await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
