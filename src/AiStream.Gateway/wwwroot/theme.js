// The theme before the first paint, so the page never flashes the other one (a classic script, run before the body).
document.documentElement.dataset.theme = localStorage.getItem('aistream.theme')
  || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
