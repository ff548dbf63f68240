// traindx report page: draws the charts of the inlined report.json with Chart.js (and chartjs-chart-matrix for
// the two grids). The findings, checks and tables are static HTML written by traindx, so the page reads without
// scripts; this file only adds the charts. traindx decides which charts have data and leaves a <canvas
// data-chart="id"> for each; every canvas here gets a chart or a visible error, never a blank box.
'use strict';

(() => {
  const report = JSON.parse(document.getElementById('traindx-report').textContent);
  const charts = report.charts || {};

  // Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
  const COLORS = {
    train: '#0072B2',
    val: '#E69F00',
    third: '#009E73',
    fourth: '#CC79A7',
    suggestion: '#D55E00',
    muted: '#8a94a3',
  };
  const NON_FINITE = '#e0115f';
  // Viridis: perceptually uniform and readable in grey scale, so heat reads as magnitude.
  const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58',
    '#b5de2b', '#fde725'];
  const BLUES = ['#f7fbff', '#deebf7', '#c6dbef', '#9ecae1', '#6baed6', '#4292c6', '#2171b5', '#08519c', '#08306b'];

  Chart.defaults.animation = false;  // draw once, synchronously: screenshots and printing see the final chart
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = '#3d4652';
  Chart.defaults.plugins.legend.labels.boxWidth = 14;
  Chart.defaults.plugins.legend.labels.boxHeight = 2;

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const finite = (values) => values.filter(isNum);
  const hasAny = (values) => Array.isArray(values) && values.some(isNum);

  /** A short, stable rendering of a number: 4 significant digits, exponent form outside [1e-3, 1e5). */
  function fmt(v) {
    if (!isNum(v)) return 'non-finite';
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(4)));
    const [mantissa, exponent] = v.toExponential(3).split('e');
    return `${Number(mantissa)}e${Number(exponent)}`;
  }
  const pct = (v) => (isNum(v) ? `${Number((v * 100).toPrecision(3))}%` : 'non-finite');
  const allFractions = (...arrays) => arrays.every((a) => !a || finite(a).every((v) => v >= 0 && v <= 1));

  /** Pairs xs with ys; a null y (a non-finite value in report.json) stays null so the line shows a gap. */
  function points(xs, ys) {
    const out = [];
    const n = Math.min(xs.length, ys ? ys.length : 0);
    for (let i = 0; i < n; i++) out.push({ x: xs[i], y: isNum(ys[i]) ? ys[i] : null });
    return out;
  }

  function lineDataset(label, data, color, extra) {
    return Object.assign({
      label, data, borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 0,
      pointHoverRadius: 4, spanGaps: false, tension: 0,
    }, extra || {});
  }

  function axisTitle(text) { return { display: true, text }; }

  /** Interpolates a colour ramp at t in [0, 1]. */
  function ramp(stops, t) {
    const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    const a = parseInt(stops[i].slice(1), 16);
    const b = parseInt(stops[i + 1].slice(1), 16);
    const mix = (shift) => Math.round(((a >> shift) & 255) * (1 - f) + ((b >> shift) & 255) * f);
    return `rgb(${mix(16)}, ${mix(8)}, ${mix(0)})`;
  }

  /** A log y axis when a positive series spans two orders of magnitude, so a divergence does not flatten the rest. */
  function valueAxis(values, title) {
    const v = finite(values);
    const positive = v.length > 0 && v.every((x) => x > 0);
    if (positive && Math.max(...v) / Math.min(...v) > 100) {
      return { type: 'logarithmic', title: axisTitle(`${title} (log scale)`), ticks: { callback: (t) => fmt(t) } };
    }
    return { type: 'linear', title: axisTitle(title), ticks: { callback: (t) => fmt(t) } };
  }

  function percentAxis(title) {
    return { type: 'linear', min: 0, max: 1, title: axisTitle(title), ticks: { callback: (t) => pct(t) } };
  }

  const stepAxis = { type: 'linear', title: axisTitle('step'), ticks: { precision: 0 } };

  // One function per canvas id that traindx emits (render_html.cpp names them).
  const drawers = {
    loss(canvas) {
      const c = charts.loss_curve;
      const datasets = [];
      if (hasAny(c.train_loss)) datasets.push(lineDataset('train loss', points(c.steps, c.train_loss), COLORS.train));
      if (hasAny(c.val_loss)) {
        datasets.push(lineDataset('validation loss', points(c.val_steps, c.val_loss), COLORS.val,
          { pointRadius: 3 }));
      }
      return new Chart(canvas, {
        type: 'line',
        data: { datasets },
        options: {
          interaction: { mode: 'nearest', intersect: false },
          scales: { x: stepAxis, y: valueAxis([...(c.train_loss || []), ...(c.val_loss || [])], 'loss') },
          plugins: { tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y)}` } } },
        },
      });
    },

    accuracy(canvas) {
      const c = charts.loss_curve;
      const datasets = [];
      if (hasAny(c.train_accuracy)) {
        datasets.push(lineDataset('train accuracy', points(c.steps, c.train_accuracy), COLORS.train));
      }
      if (hasAny(c.val_accuracy)) {
        datasets.push(lineDataset('validation accuracy', points(c.val_steps, c.val_accuracy), COLORS.val,
          { pointRadius: 3 }));
      }
      const fractions = allFractions(c.train_accuracy, c.val_accuracy);
      return new Chart(canvas, {
        type: 'line',
        data: { datasets },
        options: {
          interaction: { mode: 'nearest', intersect: false },
          scales: { x: stepAxis, y: fractions ? percentAxis('accuracy') : valueAxis([], 'accuracy') },
          plugins: {
            tooltip: {
              callbacks: {
                label: (ctx) => `${ctx.dataset.label}: ${fractions ? pct(ctx.parsed.y) : fmt(ctx.parsed.y)}`,
              },
            },
          },
        },
      });
    },

    lr_sweep(canvas) {
      const c = charts.lr_sweep;
      const raw = points(c.lrs, c.losses);
      const datasets = [lineDataset('loss', raw, COLORS.muted,
        { borderWidth: 1, pointRadius: 1.5, borderColor: '#b8c0cc', backgroundColor: COLORS.muted })];
      if (hasAny(c.smoothed)) datasets.push(lineDataset('smoothed loss', points(c.lrs, c.smoothed), COLORS.train));
      // Vertical markers span the plotted loss range; Chart.js has no built-in rule line without a plugin.
      const ys = finite([...c.losses, ...(c.smoothed || [])]);
      const lo = Math.min(...ys);
      const hi = Math.max(...ys);
      const marker = (x, label, color, dash) => lineDataset(label, [{ x, y: lo }, { x, y: hi }], color,
        { borderDash: dash, borderWidth: 2, pointHoverRadius: 0 });
      if (isNum(c.suggestion)) {
        datasets.push(marker(c.suggestion, `suggestion ${fmt(c.suggestion)}${c.rule ? ` (${c.rule})` : ''}`,
          COLORS.suggestion, []));
      }
      const altColors = [COLORS.third, COLORS.fourth, COLORS.val];
      // An alternative that picked the same rate as the suggestion would hide behind it; the legend says which
      // rule the suggestion follows.
      const alternatives = Object.entries(c.alternatives || {}).filter(([, v]) => isNum(v) && v !== c.suggestion);
      alternatives.forEach(([name, v], i) => {
        datasets.push(marker(v, `${name} ${fmt(v)}`, altColors[i % altColors.length], [6, 4]));
      });
      return new Chart(canvas, {
        type: 'line',
        data: { datasets },
        options: {
          interaction: { mode: 'nearest', intersect: false },
          scales: {
            x: {
              type: 'logarithmic',
              title: axisTitle('learning rate (log scale)'),
              ticks: { callback: (t) => (Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9 ? fmt(t) : '') },
            },
            y: { type: 'linear', title: axisTitle('loss'), ticks: { callback: (t) => fmt(t) } },
          },
          plugins: {
            tooltip: {
              callbacks: { label: (ctx) => `${ctx.dataset.label}: lr ${fmt(ctx.parsed.x)}, loss ${fmt(ctx.parsed.y)}` },
            },
          },
        },
      });
    },

    grad_norm_heatmap(canvas) {
      const c = charts.grad_norm_heatmap;
      const all = finite(c.values.flat());
      let lo = all.length ? Math.min(...all) : 0;
      let hi = all.length ? Math.max(...all) : 1;
      if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
      const data = [];
      c.layers.forEach((layer, li) => {
        c.steps.forEach((step, si) => data.push({ x: String(step), y: layer, v: c.values[li][si] }));
      });
      const gap = c.steps.length > 60 ? 0 : 1;
      const chart = new Chart(canvas, {
        type: 'matrix',
        data: {
          datasets: [{
            label: 'log10 gradient norm',
            data,
            backgroundColor: (ctx) => {
              const v = ctx.raw ? ctx.raw.v : null;
              return isNum(v) ? ramp(VIRIDIS, (v - lo) / (hi - lo)) : NON_FINITE;
            },
            borderWidth: 0,
            width: ({ chart: ch }) => Math.max(1, (ch.chartArea || { width: 0 }).width / c.steps.length - gap),
            height: ({ chart: ch }) => Math.max(1, (ch.chartArea || { height: 0 }).height / c.layers.length - gap),
          }],
        },
        options: {
          scales: {
            x: { type: 'category', labels: c.steps.map(String), offset: true, grid: { display: false },
              title: axisTitle('step'), ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12 } },
            // Not reversed (the matrix chart reverses y by default): the first layer on top, in forward order.
            y: { type: 'category', labels: c.layers, offset: true, reverse: false, grid: { display: false } },
          },
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                title: () => '',
                label: (ctx) => {
                  const { x, y, v } = ctx.raw;
                  const value = isNum(v) ? `norm ${fmt(10 ** v)} (log10 ${fmt(v)})` : 'non-finite';
                  return `${y}, step ${x}: ${value}`;
                },
              },
            },
          },
        },
      });
      addScaleLegend(canvas, `10^${fmt(lo)}`, `10^${fmt(hi)}`, VIRIDIS, 'non-finite (NaN or Inf)');
      return chart;
    },

    activation_mean_std(canvas) {
      const c = charts.activation_stats;
      return barChart(canvas, c.layers, [
        ['mean', c.mean, COLORS.train],
        ['standard deviation', c.std, COLORS.val],
      ], valueAxis([], 'activation'), fmt);
    },

    activation_fractions(canvas) {
      const c = charts.activation_stats;
      const series = [];
      if (hasAny(c.zero_fraction)) series.push(['exactly zero (dead units)', c.zero_fraction, COLORS.fourth]);
      if (hasAny(c.saturated_fraction)) series.push(['saturated', c.saturated_fraction, COLORS.suggestion]);
      return barChart(canvas, c.layers, series, percentAxis('fraction of outputs'), pct);
    },

    confusion_matrix(canvas) {
      const c = charts.confusion_matrix;
      const n = c.labels.length;
      const data = [];
      c.matrix.forEach((row, t) => {
        const total = row.reduce((s, v) => s + (isNum(v) ? v : 0), 0);
        row.forEach((v, p) => data.push({ x: c.labels[p], y: c.labels[t], v, f: total > 0 ? v / total : 0, total }));
      });
      // Counts in the cells while they fit; beyond that the colour and the tooltip carry them.
      const cellText = {
        id: 'traindxCellText',
        afterDatasetsDraw(chart) {
          const meta = chart.getDatasetMeta(0);
          if (n > 20 || !meta.data.length || meta.data[0].width < 22) return;
          const ctx = chart.ctx;
          ctx.save();
          ctx.font = `${n > 12 ? 10 : 12}px ${Chart.defaults.font.family}`;
          ctx.textAlign = 'center';
          ctx.textBaseline = 'middle';
          meta.data.forEach((element, i) => {
            const d = chart.data.datasets[0].data[i];
            const { x, y } = element.getCenterPoint();
            ctx.fillStyle = d.f > 0.5 ? '#ffffff' : '#1d232b';
            ctx.fillText(String(d.v), x, y);
          });
          ctx.restore();
        },
      };
      return new Chart(canvas, {
        type: 'matrix',
        data: {
          datasets: [{
            label: 'examples',
            data,
            backgroundColor: (ctx) => ramp(BLUES, ctx.raw ? ctx.raw.f : 0),
            borderColor: '#ffffff',
            borderWidth: 1,
            width: ({ chart: ch }) => Math.max(1, (ch.chartArea || { width: 0 }).width / n),
            height: ({ chart: ch }) => Math.max(1, (ch.chartArea || { height: 0 }).height / n),
          }],
        },
        options: {
          scales: {
            x: { type: 'category', labels: c.labels, offset: true, grid: { display: false }, position: 'top',
              title: axisTitle('predicted class') },
            // Not reversed (the matrix chart reverses y by default): the first class on top, so the diagonal runs
            // from the top left to the bottom right as in every confusion matrix people know.
            y: { type: 'category', labels: c.labels, offset: true, reverse: false, grid: { display: false },
              title: axisTitle('true class') },
          },
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                title: () => '',
                label: (ctx) => {
                  const d = ctx.raw;
                  return `true ${d.y}, predicted ${d.x}: ${d.v} of ${d.total} (${pct(d.f)})`;
                },
              },
            },
          },
        },
        plugins: [cellText],
      });
    },

    ladder(canvas) {
      const c = charts.ladder;
      const names = c.variants.map((v) => v.name);
      const train = c.variants.map((v) => (isNum(v.train_accuracy) ? v.train_accuracy : null));
      const val = c.variants.map((v) => (isNum(v.val_accuracy) ? v.val_accuracy : null));
      const fractions = allFractions(train, val);
      return barChart(canvas, names, [
        ['train accuracy', train, COLORS.train],
        ['validation accuracy', val, COLORS.val],
      ], fractions ? percentAxis('accuracy') : valueAxis([], 'accuracy'), fractions ? pct : fmt);
    },
  };

  function barChart(canvas, labels, series, yAxis, format) {
    return new Chart(canvas, {
      type: 'bar',
      data: {
        labels,
        datasets: series.map(([label, values, color]) => ({
          label, data: values.map((v) => (isNum(v) ? v : null)), backgroundColor: color, borderWidth: 0,
          barPercentage: 0.85, categoryPercentage: 0.7,
        })),
      },
      options: {
        scales: { x: { grid: { display: false } }, y: yAxis },
        plugins: {
          legend: { labels: { boxHeight: 10 } },
          tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${format(ctx.parsed.y)}` } },
        },
      },
    });
  }

  function addScaleLegend(canvas, lowLabel, highLabel, stops, missingLabel) {
    const legend = document.createElement('div');
    legend.className = 'scale-legend';
    const low = document.createElement('span');
    low.textContent = lowLabel;
    const bar = document.createElement('span');
    bar.className = 'ramp';
    bar.style.background = `linear-gradient(to right, ${stops.join(', ')})`;
    const high = document.createElement('span');
    high.textContent = highLabel;
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = NON_FINITE;
    const missing = document.createElement('span');
    missing.textContent = missingLabel;
    legend.append(low, bar, high, swatch, missing);
    canvas.parentElement.after(legend);
  }

  /** How many values a chart plots: what the browser test checks, besides the pixels. */
  function countPoints(chart) {
    return chart.data.datasets.reduce((total, dataset) => total + dataset.data.filter((d) => {
      if (d === null || d === undefined) return false;
      if (typeof d === 'number') return Number.isFinite(d);
      return d.v !== undefined || isNum(d.y);
    }).length, 0);
  }

  const drawn = {};
  for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
    const id = canvas.dataset.chart;
    try {
      if (!drawers[id]) throw new Error(`no drawer for chart '${id}'`);
      const chart = drawers[id](canvas);
      drawn[id] = { points: countPoints(chart), datasets: chart.data.datasets.length };
    } catch (error) {
      // Visible on the page, and logged so the headless browser test fails on it.
      const message = document.createElement('p');
      message.className = 'chart-empty chart-error';
      message.textContent = `This chart could not be drawn: ${error.message}`;
      canvas.parentElement.replaceWith(message);
      console.error(`traindx report: chart '${id}' failed:`, error);
    }
  }
  window.traindxReport = { charts: drawn };
  document.documentElement.dataset.rendered = 'true';
})();
