/** @type {import('prettier').Config} */
module.exports = {
  plugins: [require.resolve("@prettier/plugin-xml")],
  printWidth: 88,
  bracketSpacing: false,
  xmlWhitespaceSensitivity: "preserve",
};
