// Line charts drawn as SVG by the page itself: no library. A chart shows a
// fixed window of samples (the newest at the right edge); a sample that is
// null (no answer, or the server restarted) breaks its line. The y axis
// starts at 0 and ends at a round number above the largest value shown.

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 480;
const HEIGHT = 150;
const LEFT = 56;
const RIGHT = 6;
const TOP = 8;
const BOTTOM = 20;

function svgEl(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`. */
export function roundCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

export class LineChart {
  /**
   * @param {SVGElement} svg the element to draw in
   * @param {{ capacity: number, format: (v: number) => string, span: string, integers?: boolean }} options
   *   how many samples the window holds, how to write a value, what the window spans ("1 min"),
   *   whether values are whole numbers (the axis then labels whole numbers only)
   */
  constructor(svg, { capacity, format, span, integers = false }) {
    Object.assign(this, { svg, capacity, format, span, integers });
    svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
  }

  /** Draws `series`: [{ values: (number|null)[], colour: 0..7 }], oldest value first. */
  draw(series) {
    const shown = series.flatMap((line) => line.values).filter((value) => value !== null);
    const top = Math.max(this.integers ? 2 : 0, roundCeiling(Math.max(0, ...shown)));
    const plotWidth = WIDTH - LEFT - RIGHT;
    const plotHeight = HEIGHT - TOP - BOTTOM;
    const y = (value) => TOP + plotHeight * (1 - value / top);
    const children = [];
    for (const fraction of [0, 0.5, 1]) {
      const at = y(top * fraction);
      children.push(svgEl('line', { class: 'grid', x1: LEFT, x2: WIDTH - RIGHT, y1: at, y2: at }));
      if (this.integers && !Number.isInteger(top * fraction)) continue;
      children.push(svgEl('text', { class: 'axis', x: LEFT - 6, y: at + 4, 'text-anchor': 'end' }, this.format(top * fraction)));
    }
    const bottom = HEIGHT - 5;
    children.push(svgEl('text', { class: 'axis', x: LEFT, y: bottom }, `−${this.span}`));
    children.push(svgEl('text', { class: 'axis', x: WIDTH - RIGHT, y: bottom, 'text-anchor': 'end' }, 'now'));
    for (const line of series) {
      const offset = this.capacity - line.values.length;
      const x = (index) => LEFT + plotWidth * ((offset + index) / (this.capacity - 1));
      let path = '';
      let drawing = false;
      line.values.forEach((value, index) => {
        if (value === null) {
          drawing = false;
          return;
        }
        path += `${drawing ? 'L' : 'M'}${x(index).toFixed(1)},${y(value).toFixed(1)}`;
        drawing = true;
      });
      if (path) children.push(svgEl('path', { class: `series series-${line.colour}`, d: path }));
    }
    this.svg.replaceChildren(...children);
  }
}
