// The RGB of both videos at (x, y), fractions of their size.
window.sample = (x, y) => {
  const size = 256;
  const context = new OffscreenCanvas(size, size).getContext("2d", { willReadFrequently: true });
  const pixel = (id) => {
    context.drawImage(document.getElementById(id), 0, 0, size, size);
    return Array.from(context.getImageData(Math.round(x * (size - 1)), Math.round(y * (size - 1)), 1, 1).data.slice(0, 3));
  };
  return { camera: pixel("camera"), output: pixel("output") };
};
