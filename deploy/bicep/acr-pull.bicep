// AcrPull for Remediator's identity on the registry its image comes from, deployed at the
// registry's resource group (it may be another group or subscription than the app's).
// The app templates deploy this before the app, so the first revision can pull its image
// with the identity the same deployment creates.

targetScope = 'resourceGroup'

@description('Name of the Azure Container Registry (in this resource group).')
param registryName string

@description('Principal id of the identity that pulls the image.')
param principalId string

// AcrPull, a built-in role: pull images, nothing else
var acrPull = subscriptionResourceId(
  'Microsoft.Authorization/roleDefinitions',
  '7f951dda-4ed3-4680-a7ca-43fe172d538d'
)

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource pull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, principalId, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: acrPull
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output assignmentId string = pull.id
